package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/sigbase/sigbase/store"
	bbolt "go.etcd.io/bbolt"
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
		return roomMeta{}, fmt.Errorf("room meta of %d bytes: %w", len(b), store.ErrCorrupt)
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

// loadRoom reads a room's bookkeeping and keys for the model: all of them,
// or those named.
func loadRoom(rooms *bbolt.Bucket, room string, meta roomMeta, exists, all bool, keys []string) (*store.Room, error) {
	if !exists {
		return store.NewRoom(0, 0, 0), nil
	}
	r := store.NewRoom(meta.rev, meta.keys, meta.bytes)
	if all {
		prefix := roomPrefix(room)
		c := rooms.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := r.Load(string(k[len(prefix):]), v, 0); err != nil {
				return nil, fmt.Errorf("room %s: %w", room, err)
			}
		}
		return r, nil
	}
	for _, key := range keys {
		if rec := rooms.Get(keyRecordKey(room, key)); rec != nil {
			if err := r.Load(key, rec, 0); err != nil {
				return nil, fmt.Errorf("room %s: %w", room, err)
			}
		}
	}
	return r, nil
}

func readMeta(rooms *bbolt.Bucket, room string) (roomMeta, bool, error) {
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
func readAt(tx *bbolt.Tx, at store.Path) ([]byte, uint64, error) {
	rooms := tx.Bucket(bucketRooms)
	meta, ok, err := readMeta(rooms, at.Room)
	if err != nil {
		return nil, 0, err
	}
	r, err := loadRoom(rooms, at.Room, meta, ok, at.Depth() == 0, []string{at.Key})
	if err != nil {
		return nil, 0, err
	}
	data, rev := r.ValueAt(at)
	return data, rev, nil
}
