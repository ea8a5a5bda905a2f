package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Room is the state of one room that a write or a read needs, as an engine
// loaded it: the room's revision, key count and size, and some or all of its
// keys (Write.Needs says which). Apply and ValueAt are the model, the same
// for every engine; they do no I/O. An engine loads a Room, applies a write
// to it, stores what Touched reports, and logs the Change.
type Room struct {
	rev     uint64 // the room's last change (its ETag); 0 when absent
	keys    uint32 // key count of the whole room
	bytes   uint64 // stored bytes of the whole room, as MaxRoomBytes counts them
	loaded  []roomKey
	touched map[string]bool // keys written by Apply
}

// roomKey is one key of a room: its name, value and revisions. The keys of a
// parsed write have revisions 0.
type roomKey struct {
	name      string
	value     keyValue
	rev       uint64   // the key's last change; 0 when absent
	childRevs []uint64 // each child's last change, parallel to value.children
}

// NewRoom is a room with its bookkeeping as the engine stored it; its keys
// are added with Load. NewRoom(0, 0, 0) is an absent room.
func NewRoom(rev uint64, keys uint32, bytes uint64) *Room {
	return &Room{rev: rev, keys: keys, bytes: bytes}
}

// Exists reports whether the room holds anything.
func (r *Room) Exists() bool { return r.rev != 0 }

// Rev is the revision of the room's last change; after Apply, the write's.
func (r *Room) Rev() uint64 { return r.rev }

// Keys is the number of keys in the whole room.
func (r *Room) Keys() uint32 { return r.keys }

// Bytes is the room's stored size as the MaxRoomBytes quota counts it.
func (r *Room) Bytes() uint64 { return r.bytes }

// Load adds one stored key, as Touched gave its record. A revision stored
// as 0 means ownRev: the etcd engine learns a write's revision only when it
// commits, so it stores 0 and passes the value's revision here.
func (r *Room) Load(name string, record []byte, ownRev uint64) error {
	rd := reader{b: record}
	k := readKeyRecord(&rd, name, ownRev)
	if rd.err != nil || len(rd.b) != 0 {
		return fmt.Errorf("key %s: %w", name, ErrCorrupt)
	}
	r.put(k)
	return nil
}

// Recount counts the loaded keys and their size as the quotas do: for a
// room loaded whole, what Keys and Bytes should say.
func (r *Room) Recount() (keys uint32, bytes uint64) {
	for _, k := range r.loaded {
		keys++
		bytes += k.value.size(k.name)
	}
	return keys, bytes
}

// Touched calls fn for each key the last Apply wrote, in name order, with
// its new record, or nil when the key is gone.
func (r *Room) Touched(fn func(name string, record []byte) error) error {
	names := make([]string, 0, len(r.touched))
	for name := range r.touched {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		var rec []byte
		if i, ok := r.find(name); ok {
			rec = appendKeyRecord(nil, r.loaded[i])
		}
		if err := fn(name, rec); err != nil {
			return err
		}
	}
	return nil
}

// AppendValue writes the whole room (every key loaded) as one value, for an
// engine that stores a room so; DecodeRoomValue reads it back.
//
//	uvarint(keys) uvarint(bytes) uvarint(n) n × (string(name) record)
func (r *Room) AppendValue(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(r.keys))
	b = binary.AppendUvarint(b, r.bytes)
	b = binary.AppendUvarint(b, uint64(len(r.loaded)))
	for _, k := range r.loaded {
		b = appendString(b, k.name)
		b = appendKeyRecord(b, k)
	}
	return b
}

// DecodeRoomValue reads what AppendValue wrote, stored at revision ownRev.
func DecodeRoomValue(b []byte, ownRev uint64) (*Room, error) {
	rd := reader{b: b}
	r := NewRoom(ownRev, uint32(rd.uvarint()), rd.uvarint())
	for n := rd.count(); n > 0 && rd.err == nil; n-- {
		name := rd.string()
		r.loaded = append(r.loaded, readKeyRecord(&rd, name, ownRev))
	}
	if rd.err != nil || len(rd.b) != 0 {
		return nil, fmt.Errorf("room value: %w", ErrCorrupt)
	}
	return r, nil
}

// ValueAt is the value at a location of this room and the revision of its
// last change: "null" and 0 when nothing is stored there. A read of the
// whole room needs every key loaded.
func (r *Room) ValueAt(at Path) ([]byte, uint64) {
	if !r.Exists() {
		return []byte("null"), 0
	}
	if at.Depth() == 0 {
		return roomJSON(r.loaded), r.rev
	}
	k := r.key(at.Key)
	if at.Depth() == 1 {
		return k.value.json(), k.rev
	}
	return k.child(at.Child)
}

// Apply runs a write on the room at revision rev: check its precondition,
// resolve its server values, plan the new value of each key it touches,
// check quotas, then change the room and describe the change for watchers.
// A write that fails returns before changing anything. An engine that learns
// the revision only at commit passes 0 and stamps the Result with At.
func (r *Room) Apply(w *Write, lim Limits, rev uint64) (*Change, Result, error) {
	if w.cond.Set {
		if value, at := r.ValueAt(w.condAt()); at != w.cond.Rev {
			return nil, Result{}, &ConditionError{Value: value, Rev: at}
		}
	}
	existed := r.Exists()
	w = r.resolveServerValues(w)
	plans := r.plan(w)
	keys, size, err := checkQuotas(lim, w.at.Room, r.keys, r.bytes, plans)
	if err != nil {
		return nil, Result{}, err
	}
	c := &Change{rev: rev, at: w.at, patch: w.kind == writePatch}
	for _, p := range plans {
		r.writeKey(p, rev, w, c)
	}
	slices.Sort(c.below)
	c.gone = existed && keys == 0 && w.at.Depth() == 0
	res := result(w, plans, keys > 0).At(rev)
	if c.patch {
		c.data = w.patchJSON
	} else {
		c.data = res.Value
	}
	r.keys, r.bytes, r.rev = keys, size, rev
	if keys == 0 {
		r.rev = 0
	}
	return c, res, nil
}

func (r *Room) find(name string) (int, bool) {
	return slices.BinarySearchFunc(r.loaded, name, func(k roomKey, n string) int { return strings.Compare(k.name, n) })
}

// key is a loaded key, or an absent one.
func (r *Room) key(name string) roomKey {
	if i, ok := r.find(name); ok {
		return r.loaded[i]
	}
	return roomKey{name: name}
}

func (r *Room) put(k roomKey) {
	i, ok := r.find(k.name)
	if ok {
		r.loaded[i] = k
	} else {
		r.loaded = slices.Insert(r.loaded, i, k)
	}
}

func (r *Room) touch(name string) {
	if r.touched == nil {
		r.touched = make(map[string]bool)
	}
	r.touched[name] = true
}

// keyPlan is what a write does to one key of its room.
type keyPlan struct {
	old roomKey
	new keyValue
	// written: the key is the written location or above it, so its revision
	// moves even when its value does not.
	written bool
	// writtenChildren (sorted): children written by name, whose revisions
	// move even when their values do not.
	writtenChildren []string
	// viaChildren: a room PATCH touched the key only through key/child members.
	viaChildren bool
}

// plan computes the new value of each key the write touches.
func (r *Room) plan(w *Write) []keyPlan {
	switch {
	case w.kind == writePatch && w.at.Depth() == 0:
		return r.planRoomPatch(w)
	case w.kind == writePatch:
		old := r.key(w.at.Key)
		sets := make([]childValue, len(w.members))
		for i, m := range w.members {
			sets[i] = childValue{name: m.child, data: m.childData}
		}
		return []keyPlan{{old: old, new: old.value.withChildren(sets), written: true, writtenChildren: presentNames(sets)}}
	case w.at.Depth() == 0:
		return r.planRoomPut(w)
	case w.at.Depth() == 1:
		return []keyPlan{{old: r.key(w.at.Key), new: w.key, written: true}}
	}
	old := r.key(w.at.Key)
	sets := []childValue{{name: w.at.Child, data: w.child}}
	return []keyPlan{{old: old, new: old.value.withChildren(sets), written: true, writtenChildren: presentNames(sets)}}
}

// planRoomPut plans the replacement of the whole room: every old or new key.
func (r *Room) planRoomPut(w *Write) []keyPlan {
	old := r.loaded
	var plans []keyPlan
	i, j := 0, 0
	for i < len(old) || j < len(w.room) {
		switch {
		case j == len(w.room) || i < len(old) && old[i].name < w.room[j].name:
			plans = append(plans, keyPlan{old: old[i]})
			i++
		case i == len(old) || w.room[j].name < old[i].name:
			plans = append(plans, keyPlan{old: roomKey{name: w.room[j].name}, new: w.room[j].value})
			j++
		default:
			plans = append(plans, keyPlan{old: old[i], new: w.room[j].value})
			i, j = i+1, j+1
		}
	}
	return plans
}

// planRoomPatch groups a room PATCH's members (sorted by key, then child) by key.
func (r *Room) planRoomPatch(w *Write) []keyPlan {
	var plans []keyPlan
	for ms := w.members; len(ms) > 0; {
		n := 1
		for n < len(ms) && ms[n].key == ms[0].key {
			n++
		}
		group := ms[:n]
		ms = ms[n:]
		old := r.key(group[0].key)
		p := keyPlan{old: old, written: true}
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
	return plans
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

// checkQuotas computes the room's key count and size after the plans.
// Quotas refuse growth only: a room already over a lowered limit can still
// shrink.
func checkQuotas(lim Limits, room string, keysBefore uint32, bytesBefore uint64, plans []keyPlan) (uint32, uint64, error) {
	keys, size := int64(keysBefore), int64(bytesBefore)
	for _, p := range plans {
		switch {
		case p.old.value.absent() && !p.new.absent():
			keys++
		case !p.old.value.absent() && p.new.absent():
			keys--
		}
		size += int64(p.new.size(p.old.name)) - int64(p.old.value.size(p.old.name))
		if n := len(p.new.children); n > lim.MaxChildren && n > len(p.old.value.children) {
			return 0, 0, fmt.Errorf("%w: %s/%s would hold %d children, limit %d", ErrTooManyChildren, room, p.old.name, n, lim.MaxChildren)
		}
	}
	if keys > int64(lim.MaxKeys) && keys > int64(keysBefore) {
		return 0, 0, fmt.Errorf("%w: room %s would hold %d keys, limit %d", ErrTooManyKeys, room, keys, lim.MaxKeys)
	}
	if size > int64(lim.MaxRoomBytes) && size > int64(bytesBefore) {
		return 0, 0, fmt.Errorf("%w: room %s would hold %d bytes, limit %d", ErrRoomTooLarge, room, size, lim.MaxRoomBytes)
	}
	return uint32(keys), uint64(size), nil
}

// writeKey stores one planned key in the room and notes in c which
// locations below the written one changed. What changes gets revision rev.
func (r *Room) writeKey(p keyPlan, rev uint64, w *Write, c *Change) {
	name, old, nu := p.old.name, p.old.value, p.new
	noteBelow := func(loc string, depth int) {
		if w.at.Depth() < depth {
			c.below = append(c.below, loc)
		}
	}
	revs := make([]uint64, len(nu.children))
	i, j := 0, 0
	for i < len(old.children) || j < len(nu.children) {
		switch {
		case j == len(nu.children) || i < len(old.children) && old.children[i].name < nu.children[j].name:
			noteBelow(name+"/"+old.children[i].name, 2)
			i++
		case i == len(old.children) || nu.children[j].name < old.children[i].name:
			revs[j] = rev
			noteBelow(name+"/"+nu.children[j].name, 2)
			j++
		default:
			child := nu.children[j].name
			changed := !bytes.Equal(old.children[i].data, nu.children[j].data)
			revs[j] = p.old.childRevs[i]
			if _, written := slices.BinarySearch(p.writtenChildren, child); changed || written {
				revs[j] = rev
			}
			if changed {
				noteBelow(name+"/"+child, 2)
			}
			i, j = i+1, j+1
		}
	}
	changed := !old.equal(nu)
	if changed {
		noteBelow(name, 1)
		if w.kind == writePatch && p.viaChildren {
			c.images = append(c.images, image{key: name, data: nu.json()})
		}
	}
	switch {
	case nu.absent() && p.old.rev != 0:
		if i, ok := r.find(name); ok {
			r.loaded = slices.Delete(r.loaded, i, i+1)
		}
		r.touch(name)
	case !nu.absent() && (changed || p.written):
		r.put(roomKey{name: name, value: nu, rev: rev, childRevs: revs})
		r.touch(name)
	}
}

// result is what the caller of a write gets back, before its revision.
func result(w *Write, plans []keyPlan, roomExists bool) Result {
	var res Result
	switch w.at.Depth() {
	case 0:
		res.present = roomExists
		if w.kind == writePut {
			res.Value = roomJSON(w.room)
		}
	case 1:
		res.present = !plans[0].new.absent()
		if w.kind == writePut {
			res.Value = plans[0].new.json()
		}
	default:
		data := plans[0].new.child(w.at.Child)
		res.present = data != nil
		res.Value = data
		if data == nil {
			res.Value = []byte("null")
		}
	}
	if w.kind == writePatch {
		res.Value = w.patchJSON
	}
	if w.kind == writePush {
		res.Name = w.at.Child
		res.present = !plans[0].new.absent() // the ETag is the key's
	}
	return res
}

// A key record holds the key's revision and value: a leaf (JSON that is
// not an object), or its children with their own revisions, in name order:
//
//	uvarint(rev) string(leaf) uvarint(n) n × (string(name) uvarint(rev) string(JSON))
//
// A key is stored whole: a PUT, POST or PATCH of a small object costs one
// B+tree update rather than one per child.

func appendKeyRecord(b []byte, k roomKey) []byte {
	b = binary.AppendUvarint(b, k.rev)
	b = appendString(b, string(k.value.leaf))
	b = binary.AppendUvarint(b, uint64(len(k.value.children)))
	for i, c := range k.value.children {
		b = appendString(b, c.name)
		b = binary.AppendUvarint(b, k.childRevs[i])
		b = appendString(b, string(c.data))
	}
	return b
}

// readKeyRecord decodes a key record; a stored revision 0 reads as ownRev.
func readKeyRecord(rd *reader, name string, ownRev uint64) roomKey {
	resolve := func(rev uint64) uint64 {
		if rev == 0 {
			return ownRev
		}
		return rev
	}
	k := roomKey{name: name}
	k.rev = resolve(rd.uvarint())
	if leaf := rd.string(); leaf != "" {
		k.value.leaf = []byte(leaf)
	}
	for n := rd.count(); n > 0 && rd.err == nil; n-- {
		child := rd.string()
		k.childRevs = append(k.childRevs, resolve(rd.uvarint()))
		k.value.children = append(k.value.children, childValue{name: child, data: []byte(rd.string())})
	}
	return k
}

// recordOverhead is what each stored record costs beyond its name and value
// in the room-size quota, so a room of many tiny records is bounded too.
const recordOverhead = 32

func (v keyValue) size(name string) uint64 {
	if v.absent() {
		return 0
	}
	n := recordOverhead + uint64(len(name)+len(v.leaf))
	for _, c := range v.children {
		n += recordOverhead + uint64(len(c.name)+len(c.data))
	}
	return n
}

// child is one child's value and revision ("null" and 0 when absent).
func (k roomKey) child(name string) ([]byte, uint64) {
	for i, c := range k.value.children {
		if c.name == name {
			return c.data, k.childRevs[i]
		}
	}
	return []byte("null"), 0
}
