package etcd

import (
	"encoding/binary"
	"fmt"

	"github.com/sigbase/sigbase/store"
)

// A room is one etcd value: a version byte, the room's lease (its TTL),
// then the room as store.Room.AppendValue writes it. A key changed by the
// write that stored the value has revision 0 there, meaning the value's own
// ModRevision, unknown until etcd commits it; decodeRoom resolves it.
const roomValueVersion = 1

func encodeRoom(lease int64, r *store.Room) []byte {
	b := binary.AppendVarint([]byte{roomValueVersion}, lease)
	return r.AppendValue(b)
}

// decodeRoom reads a room value stored at revision modRev, and its lease.
func decodeRoom(b []byte, modRev uint64) (*store.Room, int64, error) {
	if len(b) == 0 || b[0] != roomValueVersion {
		return nil, 0, fmt.Errorf("room value version: %w", store.ErrCorrupt)
	}
	lease, n := binary.Varint(b[1:])
	if n <= 0 {
		return nil, 0, fmt.Errorf("room value lease: %w", store.ErrCorrupt)
	}
	r, err := store.DecodeRoomValue(b[1+n:], modRev)
	return r, lease, err
}
