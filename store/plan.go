package store

import (
	"bytes"
	"fmt"
	"slices"
)

// Planning a write is the same for every backend: read the keys it touches,
// compute their new values, check quotas, then hand the record changes to
// the backend and describe the change for watchers.

// roomReader reads a room's stored keys.
type roomReader interface {
	readKey(room, key string) (storedKey, error)
	readRoom(room string) ([]namedKey, error)
}

// prepare plans a write against r and checks its quotas; meta gets the
// room's key count and size after it. Push ids must be assigned before. It
// returns the write with its server values resolved, for commitPlans.
func prepare(o *op, r roomReader, lim Limits, meta *roomMeta) ([]keyPlan, *op, error) {
	o, err := resolveServerValues(o, r)
	if err != nil {
		return nil, nil, err
	}
	plans, err := plan(o, r)
	if err != nil {
		return nil, nil, err
	}
	return plans, o, checkQuotas(lim, o.at.Room, meta, plans)
}

// commitPlans writes the plans into sink (the touched keys of the room,
// which each backend then stores its way) with revision rev and returns the
// change they make and the caller's result. keysAfter is the room's key
// count after the write.
func commitPlans(sink *memRoom, o *op, plans []keyPlan, rev uint64, roomExisted bool, keysAfter uint32) (*change, Result, error) {
	c := &change{rev: rev, at: o.at, patch: o.kind == opPatch}
	for _, p := range plans {
		if err := writeKey(sink, o.at.Room, p, rev, o, c); err != nil {
			return nil, Result{}, err
		}
	}
	slices.Sort(c.below)
	c.gone = roomExisted && keysAfter == 0 && o.at.Depth() == 0
	res := result(o, plans, keysAfter > 0, rev)
	if c.patch {
		c.data = o.patchJSON
	} else {
		c.data = res.Value
	}
	return c, res, nil
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

// plan reads the keys a write touches and computes their new values.
func plan(o *op, r roomReader) ([]keyPlan, error) {
	room := o.at.Room
	switch {
	case o.kind == opPatch && o.at.Depth() == 0:
		return planRoomPatch(o, r)
	case o.kind == opPatch:
		old, err := r.readKey(room, o.at.Key)
		sets := make([]childValue, len(o.members))
		for i, m := range o.members {
			sets[i] = childValue{name: m.child, data: m.childData}
		}
		return []keyPlan{{name: o.at.Key, old: old, new: old.value.withChildren(sets), written: true,
			writtenChildren: presentNames(sets)}}, err
	case o.at.Depth() == 0:
		return planRoomPut(o, r)
	case o.at.Depth() == 1:
		old, err := r.readKey(room, o.at.Key)
		return []keyPlan{{name: o.at.Key, old: old, new: o.key, written: true}}, err
	}
	old, err := r.readKey(room, o.at.Key)
	sets := []childValue{{name: o.at.Child, data: o.child}}
	return []keyPlan{{name: o.at.Key, old: old, new: old.value.withChildren(sets), written: true,
		writtenChildren: presentNames(sets)}}, err
}

// planRoomPut plans the replacement of a whole room: every old or new key.
func planRoomPut(o *op, r roomReader) ([]keyPlan, error) {
	old, err := r.readRoom(o.at.Room)
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
func planRoomPatch(o *op, r roomReader) ([]keyPlan, error) {
	var plans []keyPlan
	for ms := o.members; len(ms) > 0; {
		n := 1
		for n < len(ms) && ms[n].key == ms[0].key {
			n++
		}
		group := ms[:n]
		ms = ms[n:]
		old, err := r.readKey(o.at.Room, group[0].key)
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
func checkQuotas(lim Limits, room string, meta *roomMeta, plans []keyPlan) error {
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

// writeKey writes one planned key into sink and notes in c which locations
// below the written one changed. Records that change get revision rev.
func writeKey(sink *memRoom, room string, p keyPlan, rev uint64, o *op, c *change) error {
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
			err = sink.deleteChild(room, p.name, old.children[i].name)
			noteBelow(p.name+"/"+old.children[i].name, 2)
			i++
		case i == len(old.children) || nu.children[j].name < old.children[i].name:
			err = sink.putChild(room, p.name, nu.children[j].name, rev, nu.children[j].data)
			noteBelow(p.name+"/"+nu.children[j].name, 2)
			j++
		default:
			name := nu.children[j].name
			changed := !bytes.Equal(old.children[i].data, nu.children[j].data)
			if _, written := slices.BinarySearch(p.writtenChildren, name); changed || written {
				err = sink.putChild(room, p.name, name, rev, nu.children[j].data)
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
		err = sink.deleteKey(room, p.name)
	case !nu.absent() && (changed || p.written):
		err = sink.putKey(room, p.name, rev, nu)
	}
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", room, p.name, err)
	}
	return nil
}

// result is what the caller of a write gets back.
func result(o *op, plans []keyPlan, roomExists bool, rev uint64) Result {
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
