package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// txn applies queued writes inside one bbolt write transaction. It is used by
// the writer goroutine only.
type txn struct {
	s                   *boltBackend
	now                 time.Time
	meta, rooms, expiry *bolt.Bucket

	changes    []*change // committed with the transaction, in revision order
	roomsDelta int64
	expired    uint64
}

func (s *boltBackend) newTxn(tx *bolt.Tx, now time.Time) *txn {
	t := &txn{s: s, now: now, meta: tx.Bucket(bucketMeta), rooms: tx.Bucket(bucketRooms), expiry: tx.Bucket(bucketExpiry)}
	// The index grows at its end; FillPercent is not persisted, so it is set
	// in every write transaction.
	t.expiry.FillPercent = 0.9
	return t
}

// countRooms stores the room count when this transaction changed it.
func (t *txn) countRooms(before int64) error {
	if t.roomsDelta == 0 {
		return nil
	}
	return t.meta.Put(roomCountKey, binary.BigEndian.AppendUint64(nil, uint64(before+t.roomsDelta)))
}

func (t *txn) run(o *op) (Result, error) {
	if o.kind == opSweep {
		var err error
		o.more, err = t.sweep(maxGroup)
		return Result{}, err
	}
	return t.apply(o)
}

// apply runs one PUT, DELETE, POST or PATCH: check the precondition, plan the
// new state of each affected key, check quotas, then write records, the
// change-log entry, the room's bookkeeping and its expiry. A write that
// fails its checks returns before touching anything.
func (t *txn) apply(o *op) (Result, error) {
	room := o.at.Room
	meta, exists, err := readMeta(t.rooms, room)
	if err != nil {
		return Result{}, err
	}
	if o.cond.Set {
		if err := t.checkCond(o.at, meta, exists, o.cond.Rev); err != nil {
			return Result{}, err
		}
	}
	if o.kind == opPush {
		o.at.Child = t.s.pushIDs.next(t.now)
	}
	plans, resolved, err := prepare(o, boltRecords{t.rooms}, t.s.opts.Limits, &meta)
	if err != nil {
		return Result{}, err
	}
	rev, err := t.meta.NextSequence()
	if err != nil {
		return Result{}, fmt.Errorf("next revision: %w", err)
	}
	keys := plannedKeys(plans)
	c, res, err := commitPlans(keys, resolved, plans, rev, exists, meta.keys)
	if err != nil {
		return Result{}, err
	}
	if err := t.storeKeys(room, keys); err != nil {
		return Result{}, err
	}
	if err := t.finishRoom(room, meta, exists, c); err != nil {
		return Result{}, err
	}
	t.changes = append(t.changes, c)
	return res, nil
}

// checkCond compares the location's revision with the expected one.
func (t *txn) checkCond(at Path, meta roomMeta, exists bool, want uint64) error {
	var rev uint64
	switch {
	case !exists:
	case at.Depth() == 0:
		rev = meta.rev
	default:
		k, err := readKey(t.rooms, at.Room, at.Key)
		if err != nil {
			return err
		}
		rev = k.rev
		if at.Depth() == 2 {
			_, rev = k.child(at.Child)
		}
	}
	if rev == want {
		return nil
	}
	var value []byte
	err := func() (err error) { value, rev, err = readAt(t.rooms.Tx(), at); return }()
	if err != nil {
		return err
	}
	return &ConditionError{Value: value, Rev: rev}
}

// finishRoom updates the room's bookkeeping after a write: a room left empty
// is deleted with its log and expiry entry; otherwise the change is logged,
// the log trimmed, and the expiry moved.
func (t *txn) finishRoom(room string, meta roomMeta, existed bool, c *change) error {
	if meta.keys == 0 {
		if !existed {
			return nil
		}
		t.roomsDelta--
		return t.deleteRoom(room, meta)
	}
	if !existed {
		t.roomsDelta++
		meta.created, meta.floor = c.rev, c.rev-1
	}
	meta.rev = c.rev
	entry := c.encode()
	if err := t.rooms.Put(logKey(room, c.rev), entry); err != nil {
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
		if err := t.expiry.Delete(expiryKey(meta.indexed, room)); err != nil {
			return fmt.Errorf("expiry %s: %w", room, err)
		}
	}
	meta.indexed = at
	if err := t.expiry.Put(expiryKey(at, room), nil); err != nil {
		return fmt.Errorf("expiry %s: %w", room, err)
	}
	return nil
}

func (t *txn) putMeta(room string, meta roomMeta) error {
	if err := t.rooms.Put(metaKey(room), meta.encode()); err != nil {
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
			return fmt.Errorf("log of %s: %d entries counted, none found: %w", room, meta.logCount, errCorrupt)
		}
		meta.floor = binary.BigEndian.Uint64(k[len(prefix):])
		meta.logCount--
		meta.logBytes -= uint64(len(v))
		if err := c.Delete(); err != nil {
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
		if err := c.Delete(); err != nil {
			return fmt.Errorf("delete log of %s: %w", room, err)
		}
	}
	if err := t.expiry.Delete(expiryKey(meta.indexed, room)); err != nil {
		return fmt.Errorf("delete expiry of %s: %w", room, err)
	}
	if err := t.rooms.Delete(metaKey(room)); err != nil {
		return fmt.Errorf("delete room %s: %w", room, err)
	}
	return nil
}

// boltRecords reads a room's key records from bucketRooms.
type boltRecords struct{ b *bolt.Bucket }

func (r boltRecords) readKey(room, key string) (storedKey, error) { return readKey(r.b, room, key) }
func (r boltRecords) readRoom(room string) ([]namedKey, error)    { return readRoom(r.b, room) }

// plannedKeys holds the planned keys as they are, for commitPlans to change.
func plannedKeys(plans []keyPlan) *memRoom {
	m := &memRoom{}
	for _, p := range plans {
		if p.old.rev != 0 {
			m.keys = append(m.keys, namedKey{name: p.name, storedKey: p.old})
		}
	}
	slices.SortFunc(m.keys, func(a, b namedKey) int { return strings.Compare(a.name, b.name) })
	return m.clone()
}

// storeKeys writes each key the change touched as one record, or deletes it.
func (t *txn) storeKeys(room string, keys *memRoom) error {
	for name := range keys.touched {
		var err error
		if i, ok := keys.find(name); ok {
			err = t.rooms.Put(keyRecordKey(room, name), appendKeyRecord(nil, keys.keys[i].storedKey))
		} else {
			err = t.rooms.Delete(keyRecordKey(room, name))
		}
		if err != nil {
			return fmt.Errorf("write %s/%s: %w", room, name, err)
		}
	}
	return nil
}
