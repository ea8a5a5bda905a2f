package bolt

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/storetest"
	bbolt "go.etcd.io/bbolt"
)

// TestModel runs the model test (storetest.RunModel) on bbolt files, with
// this engine's white-box bookkeeping check and its publication tracking.
// bbolt is what the Harness's zero values describe: every write takes the
// next revision, and each room's log starts at its creation and is trimmed
// to the limits.
func TestModel(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	opened := map[*store.Store]*testStore{}
	of := func(s *store.Store) *testStore {
		mu.Lock()
		defer mu.Unlock()
		return opened[s]
	}
	storetest.RunModel(t, storetest.Harness{
		Open: func(t *testing.T, opts store.Options) *store.Store {
			ts := openStore(t, opts)
			mu.Lock()
			opened[ts.Store] = ts
			mu.Unlock()
			return ts.Store
		},
		Published: func(t *testing.T, s *store.Store, rev uint64) { of(s).waitPublished(t, rev) },
		Bookkeeping: func(t *testing.T, s *store.Store, room string) (created, floor uint64, ok bool) {
			meta, ok := checkBookkeeping(t, of(s), room)
			return meta.created, meta.floor, ok
		},
	})
}

// checkBookkeeping compares a room's meta record with its records, its log
// and the expiry index.
func checkBookkeeping(t *testing.T, s *testStore, room string) (roomMeta, bool) {
	t.Helper()
	var meta roomMeta
	var ok bool
	err := s.eng.view(func(tx *bbolt.Tx) error {
		var err error
		meta, ok, err = readMeta(tx.Bucket(bucketRooms), room)
		if err != nil {
			return err
		}
		stored, err := loadRoom(tx.Bucket(bucketRooms), room, meta, true, true, nil)
		if err != nil {
			return err
		}
		nkeys, size := stored.Recount()
		var logCount, logBytes uint64
		last := meta.floor
		prefix := logPrefix(room)
		c := tx.Bucket(bucketRooms).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			rev := binary.BigEndian.Uint64(k[len(prefix):])
			if rev <= last {
				t.Errorf("room %s: log entry %d at or below %d (floor %d)", room, rev, last, meta.floor)
			}
			last = rev
			logCount++
			logBytes += uint64(len(v))
		}
		var expiries int
		tx.Bucket(bucketExpiry).ForEach(func(k, _ []byte) error {
			if string(k[8:]) == room {
				expiries++
				if at := int64(binary.BigEndian.Uint64(k)); at != meta.indexed || at > meta.expires {
					t.Errorf("room %s: expiry entry %d, meta says indexed %d, expires %d", room, at, meta.indexed, meta.expires)
				}
			}
			return nil
		})
		switch {
		case !ok && (nkeys > 0 || logCount > 0 || expiries > 0):
			t.Errorf("room %s has no meta but %d keys, %d log entries, %d expiry entries", room, nkeys, logCount, expiries)
		case ok && (meta.keys != nkeys || meta.bytes != size || uint64(meta.logCount) != logCount || meta.logBytes != logBytes || expiries != 1 || meta.rev != last):
			t.Errorf("room %s meta %+v; stored: %d keys, %d bytes, %d log entries of %d bytes (last %d), %d expiry entries",
				room, meta, nkeys, size, logCount, logBytes, last, expiries)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bookkeeping of %s: %v", room, err)
	}
	return meta, ok
}
