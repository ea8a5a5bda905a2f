package etcd

import (
	"sync"

	"github.com/sigbase/sigbase/store"
)

// roomCache keeps the value of each room this node last wrote, or read for
// a write or a watch, with its ModRevision, so that the next write to it is
// one etcd transaction instead of a read and a transaction. A stale copy
// (another node wrote the room, or its lease ran out) fails the
// transaction's guard and the write retries from etcd; an outcome reached
// without a transaction (a refused write, a no-op) is always confirmed from
// etcd. Reads never use it. A copy known current at a later etcd revision
// is not replaced by an older one, so a slow read does not undo a write's.
type roomCache struct {
	mu    sync.Mutex
	rooms map[string]cachedRoom
	bytes int
}

type cachedRoom struct {
	value  []byte // as encodeRoom wrote it; nil: the room is absent
	lease  int64
	modRev int64
	asOf   int64 // the etcd revision at which the copy was known current
}

// maxCacheBytes bounds the cache; past it, it starts over.
const maxCacheBytes = 32 << 20

func (c *roomCache) get(room string) (*store.Room, int64, int64, bool) {
	c.mu.Lock()
	cr, ok := c.rooms[room]
	c.mu.Unlock()
	if !ok {
		return nil, 0, 0, false
	}
	if cr.value == nil {
		return store.NewRoom(0, 0, 0), 0, 0, true
	}
	r, _, err := decodeRoom(cr.value, cr.modRev)
	if err != nil {
		c.drop(room)
		return nil, 0, 0, false
	}
	return r, cr.lease, cr.modRev, true
}

// put keeps a room's value as stored at modRev (nil: absent), known
// current at etcd revision asOf, unless the copy it has is known current
// later.
func (c *roomCache) put(room string, value []byte, lease, modRev, asOf int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.rooms[room]; ok {
		if old.asOf > asOf {
			return
		}
		c.bytes -= len(room) + len(old.value)
	}
	if c.rooms == nil || c.bytes+len(room)+len(value) > maxCacheBytes {
		c.rooms, c.bytes = make(map[string]cachedRoom), 0
	}
	c.rooms[room] = cachedRoom{value: value, lease: lease, modRev: modRev, asOf: asOf}
	c.bytes += len(room) + len(value)
}

// lease is the lease of the room's copy (0: absent), if the copy was known
// current at etcd revision `since` or later.
func (c *roomCache) lease(room string, since int64) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cr, ok := c.rooms[room]
	if !ok || cr.asOf < since {
		return 0, false
	}
	return cr.lease, true
}

func (c *roomCache) drop(room string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.rooms[room]; ok {
		c.bytes -= len(room) + len(old.value)
		delete(c.rooms, room)
	}
}
