package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
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

// keyPlan is what a write does to one key of its room.
type keyPlan struct {
	name string
	old  storedKey
	new  keyValue
	// written: the key is the written location or above it, so its revision
	// moves even when its value does not.
	written bool
	// writtenChildren (sorted): children written by name, whose revisions
	// move even when their values do not.
	writtenChildren []string
	// viaChildren: a room PATCH touched the key only through key/child members.
	viaChildren bool
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
	plans, err := t.plan(o)
	if err != nil {
		return Result{}, err
	}
	if err := t.checkQuotas(room, &meta, plans); err != nil {
		return Result{}, err
	}
	rev, err := t.meta.NextSequence()
	if err != nil {
		return Result{}, fmt.Errorf("next revision: %w", err)
	}
	c := &change{rev: rev, at: o.at, patch: o.kind == opPatch}
	for _, p := range plans {
		if err := t.writeKey(room, p, rev, o, c); err != nil {
			return Result{}, err
		}
	}
	slices.Sort(c.below)
	c.gone = exists && meta.keys == 0 && o.at.Depth() == 0
	res := t.result(o, plans, meta.keys > 0, rev)
	if c.patch {
		c.data = o.patchJSON
	} else {
		c.data = res.Value
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
	case at.Depth() == 1:
		if rec := t.rooms.Get(keyRecordKey(at.Room, at.Key)); rec != nil {
			rev, _ = recordRev(rec)
		}
	default:
		if rec := t.rooms.Get(childRecordKey(at.Room, at.Key, at.Child)); rec != nil {
			rev, _ = recordRev(rec)
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

// plan reads the keys a write touches and computes their new values.
func (t *txn) plan(o *op) ([]keyPlan, error) {
	room := o.at.Room
	switch {
	case o.kind == opPatch && o.at.Depth() == 0:
		return t.planRoomPatch(o)
	case o.kind == opPatch:
		old, err := readKey(t.rooms, room, o.at.Key)
		sets := make([]childValue, len(o.members))
		for i, m := range o.members {
			sets[i] = childValue{name: m.child, data: m.childData}
		}
		return []keyPlan{{name: o.at.Key, old: old, new: old.value.withChildren(sets), written: true,
			writtenChildren: presentNames(sets)}}, err
	case o.at.Depth() == 0:
		return t.planRoomPut(o)
	case o.at.Depth() == 1:
		old, err := readKey(t.rooms, room, o.at.Key)
		return []keyPlan{{name: o.at.Key, old: old, new: o.key, written: true}}, err
	}
	old, err := readKey(t.rooms, room, o.at.Key)
	sets := []childValue{{name: o.at.Child, data: o.child}}
	return []keyPlan{{name: o.at.Key, old: old, new: old.value.withChildren(sets), written: true,
		writtenChildren: presentNames(sets)}}, err
}

// planRoomPut plans the replacement of a whole room: every old or new key.
func (t *txn) planRoomPut(o *op) ([]keyPlan, error) {
	old, err := readRoom(t.rooms, o.at.Room)
	if err != nil {
		return nil, err
	}
	var plans []keyPlan
	i, j := 0, 0
	for i < len(old) || j < len(o.room) {
		switch {
		case j == len(o.room) || i < len(old) && old[i].name < o.room[j].name:
			plans = append(plans, keyPlan{name: old[i].name, old: old[i].storedKey})
			i++
		case i == len(old) || o.room[j].name < old[i].name:
			plans = append(plans, keyPlan{name: o.room[j].name, new: o.room[j].value})
			j++
		default:
			plans = append(plans, keyPlan{name: old[i].name, old: old[i].storedKey, new: o.room[j].value})
			i, j = i+1, j+1
		}
	}
	return plans, nil
}

// planRoomPatch groups a room PATCH's members (sorted by key, then child) by key.
func (t *txn) planRoomPatch(o *op) ([]keyPlan, error) {
	var plans []keyPlan
	for ms := o.members; len(ms) > 0; {
		n := 1
		for n < len(ms) && ms[n].key == ms[0].key {
			n++
		}
		group := ms[:n]
		ms = ms[n:]
		old, err := readKey(t.rooms, o.at.Room, group[0].key)
		if err != nil {
			return nil, err
		}
		p := keyPlan{name: group[0].key, old: old, written: true}
		if group[0].child == "" {
			p.new = group[0].keyValue
		} else {
			sets := make([]childValue, len(group))
			for i, m := range group {
				sets[i] = childValue{name: m.child, data: m.childData}
			}
			p.new, p.writtenChildren, p.viaChildren = old.value.withChildren(sets), presentNames(sets), true
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// withChildren is v with children set (nil data deletes). sets is sorted by
// name. As in Firebase, writing a child under a leaf replaces the leaf;
// deleting one leaves it.
func (v keyValue) withChildren(sets []childValue) keyValue {
	if v.leaf != nil {
		if len(presentNames(sets)) == 0 {
			return v
		}
		v = keyValue{}
	}
	var out []childValue
	i, j := 0, 0
	for i < len(v.children) || j < len(sets) {
		switch {
		case j == len(sets) || i < len(v.children) && v.children[i].name < sets[j].name:
			out = append(out, v.children[i])
			i++
		case i == len(v.children) || sets[j].name < v.children[i].name:
			if sets[j].data != nil {
				out = append(out, sets[j])
			}
			j++
		default:
			if sets[j].data != nil {
				out = append(out, sets[j])
			}
			i, j = i+1, j+1
		}
	}
	return keyValue{children: out}
}

func presentNames(sets []childValue) []string {
	var names []string
	for _, c := range sets {
		if c.data != nil {
			names = append(names, c.name)
		}
	}
	return names
}

// checkQuotas computes the room's key count and size after the plans and
// stores them in meta. Quotas refuse growth only: a room already over a
// lowered limit can still shrink.
func (t *txn) checkQuotas(room string, meta *roomMeta, plans []keyPlan) error {
	lim := t.s.opts.Limits
	keys, size := int64(meta.keys), int64(meta.bytes)
	for _, p := range plans {
		switch {
		case p.old.value.absent() && !p.new.absent():
			keys++
		case !p.old.value.absent() && p.new.absent():
			keys--
		}
		size += int64(p.new.size(p.name)) - int64(p.old.value.size(p.name))
		if n := len(p.new.children); n > lim.MaxChildren && n > len(p.old.value.children) {
			return fmt.Errorf("%w: %s/%s would hold %d children, limit %d", ErrTooManyChildren, room, p.name, n, lim.MaxChildren)
		}
	}
	if keys > int64(lim.MaxKeys) && keys > int64(meta.keys) {
		return fmt.Errorf("%w: room %s would hold %d keys, limit %d", ErrTooManyKeys, room, keys, lim.MaxKeys)
	}
	if size > int64(lim.MaxRoomBytes) && size > int64(meta.bytes) {
		return fmt.Errorf("%w: room %s would hold %d bytes, limit %d", ErrRoomTooLarge, room, size, lim.MaxRoomBytes)
	}
	meta.keys, meta.bytes = uint32(keys), uint64(size)
	return nil
}

// writeKey writes one planned key and notes in c which locations below the
// written one changed.
func (t *txn) writeKey(room string, p keyPlan, rev uint64, o *op, c *change) error {
	old, nu := p.old.value, p.new
	noteBelow := func(name string, depth int) {
		if o.at.Depth() < depth {
			c.below = append(c.below, name)
		}
	}
	i, j := 0, 0
	for i < len(old.children) || j < len(nu.children) {
		var err error
		switch {
		case j == len(nu.children) || i < len(old.children) && old.children[i].name < nu.children[j].name:
			err = t.rooms.Delete(childRecordKey(room, p.name, old.children[i].name))
			noteBelow(p.name+"/"+old.children[i].name, 2)
			i++
		case i == len(old.children) || nu.children[j].name < old.children[i].name:
			err = t.rooms.Put(childRecordKey(room, p.name, nu.children[j].name), encodeChildRecord(rev, nu.children[j].data))
			noteBelow(p.name+"/"+nu.children[j].name, 2)
			j++
		default:
			name := nu.children[j].name
			changed := !bytes.Equal(old.children[i].data, nu.children[j].data)
			if _, written := slices.BinarySearch(p.writtenChildren, name); changed || written {
				err = t.rooms.Put(childRecordKey(room, p.name, name), encodeChildRecord(rev, nu.children[j].data))
			}
			if changed {
				noteBelow(p.name+"/"+name, 2)
			}
			i, j = i+1, j+1
		}
		if err != nil {
			return fmt.Errorf("write %s/%s: %w", room, p.name, err)
		}
	}
	changed := !old.equal(nu)
	if changed {
		noteBelow(p.name, 1)
		if o.kind == opPatch && p.viaChildren {
			c.images = append(c.images, image{key: p.name, data: nu.json()})
		}
	}
	var err error
	switch {
	case nu.absent() && p.old.rev != 0:
		err = t.rooms.Delete(keyRecordKey(room, p.name))
	case !nu.absent() && (changed || p.written):
		err = t.rooms.Put(keyRecordKey(room, p.name), encodeKeyRecord(rev, nu))
	}
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", room, p.name, err)
	}
	return nil
}

// result is what the caller of a write gets back.
func (t *txn) result(o *op, plans []keyPlan, roomExists bool, rev uint64) Result {
	var present bool
	res := Result{Rev: rev}
	switch o.at.Depth() {
	case 0:
		present = roomExists
		if o.kind == opPut {
			res.Value = roomJSON(o.room)
		}
	case 1:
		present = !plans[0].new.absent()
		if o.kind == opPut {
			res.Value = plans[0].new.json()
		}
	default:
		data := plans[0].new.child(o.at.Child)
		present = data != nil
		res.Value = data
		if data == nil {
			res.Value = []byte("null")
		}
	}
	if o.kind == opPatch {
		res.Value = o.patchJSON
	}
	if o.kind == opPush {
		res.Name = o.at.Child
		present = !plans[0].new.absent() // the ETag is the key's
	}
	if present {
		res.ETag = rev
	}
	return res
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
