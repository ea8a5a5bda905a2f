package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/sigbase/sigbase/store"
	bbolt "go.etcd.io/bbolt"
)

// txn applies queued writes inside one bbolt write transaction. It is used by
// the writer goroutine only.
type txn struct {
	s                   *engine
	now                 time.Time
	meta, rooms, expiry *bbolt.Bucket
	buckets             [redoBucketCount]*bbolt.Bucket // by redo id
	redo                *redo                          // what the transaction did, for the log
	failed              bool                           // a storage failure stopped the group

	changes    []*store.Change // committed with the transaction, in revision order
	roomsDelta int64
	expired    uint64
}

func (s *engine) newTxn(tx *bbolt.Tx, now time.Time, r *redo) *txn {
	t := &txn{s: s, now: now, redo: r}
	for id, name := range redoBuckets {
		t.buckets[id] = tx.Bucket(name)
	}
	t.meta, t.rooms, t.expiry = t.buckets[redoMeta], t.buckets[redoRooms], t.buckets[redoExpiry]
	// The index grows at its end; FillPercent is not persisted, so it is set
	// in every write transaction.
	t.expiry.FillPercent = 0.9
	return t
}

// put, del and nextRev change the buckets; every change goes through them,
// so the redo record holds them all.
func (t *txn) put(bucket byte, k, v []byte) error {
	if err := t.buckets[bucket].Put(k, v); err != nil {
		return err
	}
	t.redo.put(bucket, k, v)
	return nil
}

func (t *txn) del(bucket byte, k []byte) error {
	if err := t.buckets[bucket].Delete(k); err != nil {
		return err
	}
	t.redo.delete(bucket, k)
	return nil
}

func (t *txn) nextRev() (uint64, error) {
	rev, err := t.meta.NextSequence()
	if err != nil {
		return 0, err
	}
	t.redo.sequence(redoMeta, rev)
	return rev, nil
}

// countRooms stores the room count when this transaction changed it.
func (t *txn) countRooms(before int64) error {
	if t.roomsDelta == 0 {
		return nil
	}
	return t.put(redoMeta, roomCountKey, binary.BigEndian.AppendUint64(nil, uint64(before+t.roomsDelta)))
}

func (t *txn) run(o *op) (store.Result, error) {
	if o.write == nil {
		return store.Result{}, o.run(t)
	}
	return t.apply(o.write)
}

// apply runs one PUT, DELETE, POST or PATCH: load the room's bookkeeping
// and the keys the write needs, apply it (store.Room.Apply: precondition,
// server values, new key values, quotas), then write the touched key
// records, the change-log entry, the room's bookkeeping and its expiry. A
// write that fails returns before touching anything.
func (t *txn) apply(w *store.Write) (store.Result, error) {
	name := w.Room()
	meta, exists, err := readMeta(t.rooms, name)
	if err != nil {
		return store.Result{}, err
	}
	all, keys := w.Needs()
	room, err := loadRoom(t.rooms, name, meta, exists, all, keys)
	if err != nil {
		return store.Result{}, err
	}
	w.NamePush(&t.s.pushIDs, t.now)
	// The revision is taken from the sequence only once the write applies,
	// so a failed write leaves no gap.
	rev := t.meta.Sequence() + 1
	c, res, err := room.Apply(w, t.s.opts.Limits, rev)
	if err != nil {
		return store.Result{}, err
	}
	if next, err := t.nextRev(); err != nil || next != rev {
		return store.Result{}, fmt.Errorf("next revision %d, want %d: %v", next, rev, err)
	}
	err = room.Touched(func(key string, rec []byte) error {
		if rec == nil {
			return t.del(redoRooms, keyRecordKey(name, key))
		}
		return t.put(redoRooms, keyRecordKey(name, key), rec)
	})
	if err != nil {
		return store.Result{}, fmt.Errorf("write %s: %w", name, err)
	}
	meta.keys, meta.bytes = room.Keys(), room.Bytes()
	if err := t.finishRoom(name, meta, exists, c); err != nil {
		return store.Result{}, err
	}
	t.changes = append(t.changes, c)
	return res, nil
}

// finishRoom updates the room's bookkeeping after a write: a room left empty
// is deleted with its log and expiry entry; otherwise the change is logged,
// the log trimmed, and the expiry moved.
func (t *txn) finishRoom(room string, meta roomMeta, existed bool, c *store.Change) error {
	if meta.keys == 0 {
		if !existed {
			return nil
		}
		t.roomsDelta--
		return t.deleteRoom(room, meta)
	}
	if !existed {
		t.roomsDelta++
		meta.created, meta.floor = c.Rev(), c.Rev()-1
	}
	meta.rev = c.Rev()
	entry := c.Encode()
	if err := t.put(redoRooms, logKey(room, c.Rev()), entry); err != nil {
		return fmt.Errorf("log %s: %w", room, err)
	}
	meta.logCount++
	meta.logBytes += uint64(len(entry))
	if err := t.trimLog(room, &meta); err != nil {
		return err
	}
	meta.expires = t.now.Add(t.s.opts.RoomTTL).UnixNano()
	// The index entry moves only when it lags by an eighth of the TTL: the
	// sweeper reads the exact time from meta when the entry comes due.
	if !existed || meta.expires-meta.indexed > int64(t.s.opts.RoomTTL/8) {
		if err := t.reindex(room, &meta, existed, meta.expires); err != nil {
			return err
		}
	}
	return t.putMeta(room, meta)
}

// reindex moves the room's expiry index entry to at.
func (t *txn) reindex(room string, meta *roomMeta, indexed bool, at int64) error {
	if indexed {
		if err := t.del(redoExpiry, expiryKey(meta.indexed, room)); err != nil {
			return fmt.Errorf("expiry %s: %w", room, err)
		}
	}
	meta.indexed = at
	if err := t.put(redoExpiry, expiryKey(at, room), nil); err != nil {
		return fmt.Errorf("expiry %s: %w", room, err)
	}
	return nil
}

func (t *txn) putMeta(room string, meta roomMeta) error {
	if err := t.put(redoRooms, metaKey(room), meta.encode()); err != nil {
		return fmt.Errorf("room %s: %w", room, err)
	}
	return nil
}

// trimLog drops the room's oldest log entries while it is over its limits
// (the newest entry always stays), raising the floor of provable resumes.
func (t *txn) trimLog(room string, meta *roomMeta) error {
	lim := t.s.opts.Limits
	prefix := logPrefix(room)
	c := t.rooms.Cursor()
	for meta.logCount > 1 && (meta.logCount > uint32(lim.MaxLogEntries) || meta.logBytes > uint64(lim.MaxLogBytes)) {
		k, v := c.Seek(prefix)
		if k == nil || !bytes.HasPrefix(k, prefix) {
			return fmt.Errorf("log of %s: %d entries counted, none found: %w", room, meta.logCount, store.ErrCorrupt)
		}
		meta.floor = binary.BigEndian.Uint64(k[len(prefix):])
		meta.logCount--
		meta.logBytes -= uint64(len(v))
		if err := t.del(redoRooms, bytes.Clone(k)); err != nil {
			return fmt.Errorf("trim log of %s: %w", room, err)
		}
	}
	return nil
}

// deleteRoom removes an emptied room's bookkeeping, log and expiry entry.
func (t *txn) deleteRoom(room string, meta roomMeta) error {
	prefix := logPrefix(room)
	c := t.rooms.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := t.del(redoRooms, bytes.Clone(k)); err != nil {
			return fmt.Errorf("delete log of %s: %w", room, err)
		}
	}
	if err := t.del(redoExpiry, expiryKey(meta.indexed, room)); err != nil {
		return fmt.Errorf("delete expiry of %s: %w", room, err)
	}
	if err := t.del(redoRooms, metaKey(room)); err != nil {
		return fmt.Errorf("delete room %s: %w", room, err)
	}
	return nil
}
