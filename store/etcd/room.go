package etcd

import (
	"encoding/binary"
	"fmt"

	"github.com/sigbase/sigbase/store"
)

// Revisions. Writes to different rooms committed in one etcd transaction
// share its etcd revision (batch.go), and each has a slot in it, so a
// write's revision is etcdRev × SlotsPerRev + slot: strictly increasing, and
// in etcd's order.
const SlotsPerRev = 1000

func revAt(etcdRev int64, slot int) uint64 { return uint64(etcdRev)*SlotsPerRev + uint64(slot) }

// headRev is the revision a read at etcd revision etcdRev reports (a
// no-op's, Stats'): its first slot's. A room's snapshot reports its own
// last write's revision when that is later (a later slot of the same etcd
// revision), so that resuming after it replays nothing twice.
func headRev(etcdRev int64) uint64 { return revAt(etcdRev, 0) }

// lastRev is the last revision of etcd revision etcdRev: a resume after
// anything above it is from the future.
func lastRev(etcdRev int64) uint64 { return revAt(etcdRev, SlotsPerRev-1) }

// etcdRevOf is the etcd revision a revision was committed at.
func etcdRevOf(rev uint64) int64 { return int64(rev / SlotsPerRev) }

// A room is one etcd value: a version byte, the write's slot (2 bytes, big
// endian), the room's lease (its TTL), then the room as
// store.Room.AppendValue writes it. A key changed by the write that stored
// the value has revision 0 there, meaning the value's own revision, unknown
// until etcd commits it; decodeRoom resolves it.
//
// A change is one etcd value too: changeValueVersion, the slot, then the
// change as store.Change.Encode writes it.
//
// Version 1 room values and bare changes, from before batching, have no
// slot: slot 0.
const (
	roomValueVersion   = 2
	changeValueVersion = 0xe2 // not a store change version: those count from 1
)

func encodeRoom(lease int64, r *store.Room) []byte {
	b := binary.AppendVarint([]byte{roomValueVersion, 0, 0}, lease)
	return r.AppendValue(b)
}

func encodeChange(c *store.Change) []byte {
	return c.AppendEncoded([]byte{changeValueVersion, 0, 0})
}

// putSlot writes the slot into a value encodeRoom or encodeChange made.
func putSlot(value []byte, slot int) { binary.BigEndian.PutUint16(value[1:3], uint16(slot)) }

// decodeRoom reads a room value stored at etcd revision modRev, and its
// lease.
func decodeRoom(b []byte, modRev int64) (*store.Room, int64, error) {
	rev, b, err := roomRev(b, modRev)
	if err != nil {
		return nil, 0, err
	}
	lease, n := binary.Varint(b)
	if n <= 0 {
		return nil, 0, fmt.Errorf("room value lease: %w", store.ErrCorrupt)
	}
	r, err := store.DecodeRoomValue(b[n:], rev)
	return r, lease, err
}

// roomRev is the revision of the write that stored a room value at etcd
// revision modRev, and the value after its version and slot.
func roomRev(b []byte, modRev int64) (uint64, []byte, error) {
	switch {
	case len(b) >= 3 && b[0] == roomValueVersion:
		return revAt(modRev, int(binary.BigEndian.Uint16(b[1:3]))), b[3:], nil
	case len(b) > 0 && b[0] == 1:
		return revAt(modRev, 0), b[1:], nil
	}
	return 0, nil, fmt.Errorf("room value version: %w", store.ErrCorrupt)
}

// decodeChange reads a change value stored at etcd revision modRev.
func decodeChange(room string, b []byte, modRev int64) (*store.Change, error) {
	slot := 0
	if len(b) >= 3 && b[0] == changeValueVersion {
		slot, b = int(binary.BigEndian.Uint16(b[1:3])), b[3:]
	}
	return store.DecodeChange(room, revAt(modRev, slot), b)
}
