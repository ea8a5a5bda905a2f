package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// memRoom is a room as the etcd backend keeps it: one value holding every
// record. A record changed by the write that stored the value has revision
// 0, meaning the value's own ModRevision (unknown until etcd commits it);
// decodeRoom resolves it.
type memRoom struct {
	meta    roomMeta // keys and bytes; the rest is the bbolt backend's
	lease   int64    // the room's etcd lease: its TTL
	keys    []namedKey
	touched map[string]bool // keys written by commitPlans since made
}

const memRoomVersion = 1

// The room value: a version byte, the lease, keys count and bytes, then
// each key's name and record (see appendKeyRecord).
func (r *memRoom) encode() []byte {
	b := []byte{memRoomVersion}
	b = binary.AppendVarint(b, r.lease)
	b = binary.AppendUvarint(b, uint64(r.meta.keys))
	b = binary.AppendUvarint(b, r.meta.bytes)
	b = binary.AppendUvarint(b, uint64(len(r.keys)))
	for _, k := range r.keys {
		b = appendString(b, k.name)
		b = appendKeyRecord(b, k.storedKey)
	}
	return b
}

// decodeRoom reads a room value stored at revision modRev.
func decodeRoom(b []byte, modRev uint64) (*memRoom, error) {
	r := reader{b: b}
	if v := r.byte(); v != memRoomVersion {
		return nil, fmt.Errorf("room value version %d: %w", v, errCorrupt)
	}
	lease, n := binary.Varint(r.b)
	if n <= 0 {
		return nil, errCorrupt
	}
	r.b = r.b[n:]
	m := &memRoom{lease: lease}
	m.meta.keys = uint32(r.uvarint())
	m.meta.bytes = r.uvarint()
	resolve := func(rev uint64) uint64 {
		if rev == 0 {
			return modRev
		}
		return rev
	}
	for nk := r.count(); nk > 0 && r.err == nil; nk-- {
		name := r.string()
		m.keys = append(m.keys, namedKey{name: name, storedKey: readKeyRecord(&r, resolve)})
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, fmt.Errorf("room value: %w", errCorrupt)
	}
	return m, nil
}

func (r *reader) uvarint() uint64 {
	n, w := binary.Uvarint(r.b)
	if w <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[w:]
	return n
}

func (m *memRoom) find(key string) (int, bool) {
	return slices.BinarySearchFunc(m.keys, key, func(k namedKey, name string) int { return strings.Compare(k.name, name) })
}

// clone copies the key list deeply enough for commitPlans,
// which insert into and delete from children in place.
func (m *memRoom) clone() *memRoom {
	c := *m
	c.touched = nil
	c.keys = make([]namedKey, len(m.keys))
	for i, k := range m.keys {
		c.keys[i] = k
		c.keys[i].value.children = slices.Clone(k.value.children)
		c.keys[i].childRevs = slices.Clone(k.childRevs)
	}
	return &c
}

func (m *memRoom) readKey(_, key string) (storedKey, error) {
	if i, ok := m.find(key); ok {
		return m.clone().keys[i].storedKey, nil
	}
	return storedKey{}, nil
}

func (m *memRoom) readRoom(string) ([]namedKey, error) { return m.clone().keys, nil }

// entry is the key's record, created empty if missing.
func (m *memRoom) entry(key string) *namedKey {
	i, ok := m.find(key)
	if !ok {
		m.keys = slices.Insert(m.keys, i, namedKey{name: key})
	}
	return &m.keys[i]
}

func (m *memRoom) touch(key string) {
	if m.touched == nil {
		m.touched = make(map[string]bool)
	}
	m.touched[key] = true
}

func (m *memRoom) putKey(_, key string, rev uint64, v keyValue) error {
	m.touch(key)
	k := m.entry(key)
	k.rev, k.value.leaf = rev, v.leaf
	return nil
}

func (m *memRoom) deleteKey(_, key string) error {
	m.touch(key)
	if i, ok := m.find(key); ok {
		m.keys = slices.Delete(m.keys, i, i+1)
	}
	return nil
}

func (m *memRoom) putChild(_, key, child string, rev uint64, data []byte) error {
	m.touch(key)
	k := m.entry(key)
	i, ok := slices.BinarySearchFunc(k.value.children, child, func(c childValue, n string) int { return strings.Compare(c.name, n) })
	if ok {
		k.value.children[i].data, k.childRevs[i] = data, rev
		return nil
	}
	k.value.children = slices.Insert(k.value.children, i, childValue{name: child, data: data})
	k.childRevs = slices.Insert(k.childRevs, i, rev)
	return nil
}

func (m *memRoom) deleteChild(_, key, child string) error {
	m.touch(key)
	i, ok := m.find(key)
	if !ok {
		return nil
	}
	k := &m.keys[i]
	if j, ok := slices.BinarySearchFunc(k.value.children, child, func(c childValue, n string) int { return strings.Compare(c.name, n) }); ok {
		k.value.children = slices.Delete(k.value.children, j, j+1)
		k.childRevs = slices.Delete(k.childRevs, j, j+1)
	}
	return nil
}

// valueAt is the value at a location and its revision; the room's own
// revision is roomRev (its value's ModRevision). A nil room is absent.
func (m *memRoom) valueAt(at Path, roomRev uint64) ([]byte, uint64) {
	if m == nil || len(m.keys) == 0 {
		return []byte("null"), 0
	}
	if at.Depth() == 0 {
		keys := make([]keyEntry, len(m.keys))
		for i, k := range m.keys {
			keys[i] = keyEntry{name: k.name, value: k.value}
		}
		return roomJSON(keys), roomRev
	}
	i, ok := m.find(at.Key)
	if !ok {
		return []byte("null"), 0
	}
	k := m.keys[i]
	if at.Depth() == 1 {
		return k.value.json(), k.rev
	}
	for j, c := range k.value.children {
		if c.name == at.Child {
			return c.data, k.childRevs[j]
		}
	}
	return []byte("null"), 0
}
