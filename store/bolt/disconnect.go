package bolt

import (
	"fmt"
	"strings"
	"time"

	"github.com/sigbase/sigbase/store"
	bbolt "go.etcd.io/bbolt"
)

// onDisconnect records (store.Store.SaveDisconnect) live in their own
// bucket, room 0x00 session → the PATCH body.
var bucketDisconnect = []byte("disconnect")

func disconnectKey(room, session string) []byte { return []byte(room + "\x00" + session) }

// A bbolt record is written in its own small transaction beside the
// writer's; this process alone runs the grace periods, so it always claims.
func (s *engine) SaveDisconnect(room, session string, patch []byte, _ time.Duration) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDisconnect)
		if err != nil {
			return err
		}
		return b.Put(disconnectKey(room, session), patch)
	})
}

func (s *engine) ReleaseDisconnect(string, string) {}

func (s *engine) ClaimDisconnect(room, session string) (bool, error) {
	return true, s.DropDisconnect(room, session)
}

func (s *engine) DropDisconnect(room, session string) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketDisconnect); b != nil {
			return b.Delete(disconnectKey(room, session))
		}
		return nil
	})
}

func (s *engine) Disconnects() ([]store.DisconnectRecord, error) {
	var out []store.DisconnectRecord
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDisconnect)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			room, session, ok := strings.Cut(string(k), "\x00")
			if !ok {
				return fmt.Errorf("%w: disconnect key %q", store.ErrCorrupt, k)
			}
			out = append(out, store.DisconnectRecord{Room: room, Session: session, Patch: append([]byte(nil), v...)})
			return nil
		})
	})
	return out, err
}
