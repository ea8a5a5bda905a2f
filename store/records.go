package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Buckets; the layout is described in doc.go.
var (
	bucketMeta   = []byte("meta")
	bucketRooms  = []byte("rooms")
	bucketExpiry = []byte("expiry")
)

// Keys in bucketMeta: the layout version (Open refuses others) and the
// number of rooms.
var (
	schemaKey    = []byte("schema")
	roomCountKey = []byte("rooms")
)

const schemaVersion = 3

// recordOverhead is what each stored record costs beyond its name and value
// in the room-size quota, so a room of many tiny records is bounded too.
const recordOverhead = 32

var errCorrupt = errors.New("corrupt record")

// roomMeta is the bookkeeping of one room, stored in bucketRooms.
type roomMeta struct {
	created  uint64 // revision that created this incarnation of the room
	floor    uint64 // every change of this incarnation after floor is in the log
	rev      uint64 // revision of the last change in the room (its ETag)
	bytes    uint64 // stored bytes as counted by the MaxRoomBytes quota
	logBytes uint64 // bytes of the room's change log
	expires  int64  // unix nanoseconds: when the room expires, watchers aside
	indexed  int64  // unix nanoseconds: its expiry index key, at or before expires
	keys     uint32
	logCount uint32
}

const roomMetaSize = 7*8 + 2*4

func (m roomMeta) encode() []byte {
	b := make([]byte, 0, roomMetaSize)
	b = binary.BigEndian.AppendUint64(b, m.created)
	b = binary.BigEndian.AppendUint64(b, m.floor)
	b = binary.BigEndian.AppendUint64(b, m.rev)
	b = binary.BigEndian.AppendUint64(b, m.bytes)
	b = binary.BigEndian.AppendUint64(b, m.logBytes)
	b = binary.BigEndian.AppendUint64(b, uint64(m.expires))
	b = binary.BigEndian.AppendUint64(b, uint64(m.indexed))
	b = binary.BigEndian.AppendUint32(b, m.keys)
	return binary.BigEndian.AppendUint32(b, m.logCount)
}

func decodeRoomMeta(b []byte) (roomMeta, error) {
	if len(b) != roomMetaSize {
		return roomMeta{}, fmt.Errorf("room meta of %d bytes: %w", len(b), errCorrupt)
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[i*8:]) }
	return roomMeta{
		created: u(0), floor: u(1), rev: u(2), bytes: u(3), logBytes: u(4), expires: int64(u(5)), indexed: int64(u(6)),
		keys:     binary.BigEndian.Uint32(b[56:]),
		logCount: binary.BigEndian.Uint32(b[60:]),
	}, nil
}

// Record keys, all in bucketRooms so that one room's records sit together:
//
//	room 0x00 BE(rev)     a change-log entry
//	room 0x01 key         a key record: its value, children inline
//	room 0x02             its roomMeta
//
// Names are [A-Za-z0-9_-], all above 0x02, so "room\0" prefixes exactly one
// room's log, "room\1" its keys, and nothing of another room falls between. A write appends to the log, sets
// records and updates the meta: all at the end of the room's range, mostly in
// one page, which is what a commit writes out.

func logPrefix(room string) []byte { return append([]byte(room), 0) }

func roomPrefix(room string) []byte { return append([]byte(room), 1) }

func metaKey(room string) []byte { return append([]byte(room), 2) }

func keyRecordKey(room, key string) []byte {
	return append(roomPrefix(room), key...)
}

func logKey(room string, rev uint64) []byte {
	return binary.BigEndian.AppendUint64(logPrefix(room), rev)
}

func expiryKey(expires int64, room string) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(expires)), room...)
}

// A key record holds the key's revision and value: a leaf (JSON that is
// not an object), or its children with their own revisions, in name order:
//
//	uvarint(rev) string(leaf) uvarint(n) n × (string(name) uvarint(rev) string(JSON))
//
// A key is written whole, in one Put: a PUT, POST or PATCH of a small
// object costs one B+tree update rather than one per child.

func appendKeyRecord(b []byte, k storedKey) []byte {
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

// readKeyRecord decodes a key record; resolve maps stored revisions (the
// etcd backend stores 0 for "this value's own revision").
func readKeyRecord(r *reader, resolve func(uint64) uint64) storedKey {
	var k storedKey
	k.rev = resolve(r.uvarint())
	if leaf := r.string(); leaf != "" {
		k.value.leaf = []byte(leaf)
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		name := r.string()
		k.childRevs = append(k.childRevs, resolve(r.uvarint()))
		k.value.children = append(k.value.children, childValue{name: name, data: []byte(r.string())})
	}
	return k
}

func decodeKeyRecord(b []byte) (storedKey, error) {
	r := reader{b: b}
	k := readKeyRecord(&r, func(rev uint64) uint64 { return rev })
	if r.err != nil || len(r.b) != 0 {
		return storedKey{}, errCorrupt
	}
	return k, nil
}

// storedKey is a key as read from the data bucket, values copied out.
type storedKey struct {
	value     keyValue
	rev       uint64   // 0 when absent
	childRevs []uint64 // parallel to value.children
}

func keyRecordSize(name string, v keyValue) uint64 {
	return recordOverhead + uint64(len(name)+len(v.leaf))
}

func childRecordSize(name string, data []byte) uint64 {
	return recordOverhead + uint64(len(name)+len(data))
}

func (v keyValue) size(name string) uint64 {
	if v.absent() {
		return 0
	}
	n := keyRecordSize(name, v)
	for _, c := range v.children {
		n += childRecordSize(c.name, c.data)
	}
	return n
}

// readKey reads one key and its children.
func readKey(data *bolt.Bucket, room, key string) (storedKey, error) {
	rec := data.Get(keyRecordKey(room, key))
	if rec == nil {
		return storedKey{}, nil
	}
	k, err := decodeKeyRecord(rec)
	if err != nil {
		return storedKey{}, fmt.Errorf("key %s/%s: %w", room, key, err)
	}
	return k, nil
}

// readRoom reads every key of a room with its children, in name order.
func readRoom(data *bolt.Bucket, room string) ([]namedKey, error) {
	prefix := roomPrefix(room)
	var keys []namedKey
	c := data.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		sk, err := decodeKeyRecord(v)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		keys = append(keys, namedKey{name: string(k[len(prefix):]), storedKey: sk})
	}
	return keys, nil
}

// namedKey is a stored key with its name.
type namedKey struct {
	name string
	storedKey
}

func readMeta(rooms *bolt.Bucket, room string) (roomMeta, bool, error) {
	b := rooms.Get(metaKey(room))
	if b == nil {
		return roomMeta{}, false, nil
	}
	m, err := decodeRoomMeta(b)
	if err != nil {
		return roomMeta{}, false, fmt.Errorf("room %s: %w", room, err)
	}
	return m, true, nil
}

// readAt reads the value at a location and the revision of its last change
// (0 and "null" when nothing is stored there).
func readAt(tx *bolt.Tx, at Path) ([]byte, uint64, error) {
	data := tx.Bucket(bucketRooms)
	meta, ok, err := readMeta(data, at.Room)
	if err != nil || !ok {
		return []byte("null"), 0, err
	}
	switch at.Depth() {
	case 0:
		stored, err := readRoom(data, at.Room)
		keys := make([]keyEntry, len(stored))
		for i, k := range stored {
			keys[i] = keyEntry{name: k.name, value: k.value}
		}
		return roomJSON(keys), meta.rev, err
	}
	sk, err := readKey(data, at.Room, at.Key)
	if err != nil || at.Depth() == 1 {
		return sk.value.json(), sk.rev, err
	}
	value, rev := sk.child(at.Child)
	return value, rev, nil
}

// child is one child's value and revision ("null" and 0 when absent).
func (k storedKey) child(name string) ([]byte, uint64) {
	for i, c := range k.value.children {
		if c.name == name {
			return c.data, k.childRevs[i]
		}
	}
	return []byte("null"), 0
}

// Change log entries: a version byte, flags, the location inside the room,
// the data, the changed locations below it, and key images (see change).

const changeVersion = 1

const (
	flagPatch = 1 << iota
	flagGone
)

func (c *change) encode() []byte {
	b := make([]byte, 0, 16+len(c.at.Key)+len(c.at.Child)+len(c.data))
	var flags byte
	if c.patch {
		flags |= flagPatch
	}
	if c.gone {
		flags |= flagGone
	}
	b = append(b, changeVersion, flags)
	b = appendString(b, c.at.Key)
	b = appendString(b, c.at.Child)
	b = appendString(b, string(c.data))
	b = binary.AppendUvarint(b, uint64(len(c.below)))
	for _, name := range c.below {
		b = appendString(b, name)
	}
	b = binary.AppendUvarint(b, uint64(len(c.images)))
	for _, im := range c.images {
		b = appendString(b, im.key)
		b = appendString(b, string(im.data))
	}
	return b
}

func decodeChange(room string, rev uint64, b []byte) (*change, error) {
	r := reader{b: b}
	if v := r.byte(); v != changeVersion {
		return nil, fmt.Errorf("change %d of %s has version %d: %w", rev, room, v, errCorrupt)
	}
	flags := r.byte()
	c := &change{rev: rev, patch: flags&flagPatch != 0, gone: flags&flagGone != 0}
	c.at = Path{Room: room, Key: r.string(), Child: r.string()}
	c.data = []byte(r.string())
	for n := r.count(); n > 0 && r.err == nil; n-- {
		c.below = append(c.below, r.string())
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		c.images = append(c.images, image{key: r.string(), data: []byte(r.string())})
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, fmt.Errorf("change %d of %s: %w", rev, room, errCorrupt)
	}
	return c, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// reader decodes what appendString and AppendUvarint wrote; the first
// failure sticks in err.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.err = errCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) count() uint64 {
	n, w := binary.Uvarint(r.b)
	if w <= 0 || n > uint64(len(r.b)) {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[w:]
	return n
}

func (r *reader) string() string {
	n := r.count()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
