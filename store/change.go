package store

import (
	"encoding/json"
	"slices"
	"sync"
)

// Event is one change as a watcher of some location sees it: a put of a
// value at Path (relative to the watched location) or a patch of members.
type Event struct {
	Rev   uint64
	Patch bool   // a "patch" event; otherwise "put"
	Path  string // "/" or "/key", "/key/child", "/child"
	Data  []byte // compact JSON: the value, or the patch object
}

// change is one committed write of a room, as kept in the change log and
// handed to watchers. Everything a watcher of any location in the room needs
// is here, so replay from the log and live delivery agree.
type change struct {
	rev   uint64
	at    Path   // the written location, or the patched one
	patch bool   // data is a patch object of members relative to at
	data  []byte // put: the new value at `at` ("null" when deleted)
	gone  bool   // the room was deleted: every location in it is now null
	// below lists, sorted, the locations strictly below `at` ("key" or
	// "key/child") whose value changed: watchers there get an event.
	below []string
	// images holds, for a patch of a room, the new values of keys changed only
	// through key/child members: a watcher of the key gets the whole value.
	images []image

	memoMu sync.Mutex
	memo   map[string][]byte // values below `at`, extracted once for many watchers
}

type image struct {
	key  string
	data []byte
}

// size approximates the change's memory, for the watcher queue bound.
func (c *change) size() int { return 128 + len(c.data) + 16*len(c.below) }

// eventFor projects the change onto a watcher of loc (same room).
func (c *change) eventFor(loc Path) (Event, bool) {
	if loc.contains(c.at) {
		return Event{Rev: c.rev, Patch: c.patch, Path: loc.relative(c.at), Data: c.data}, true
	}
	if !c.at.contains(loc) {
		return Event{}, false
	}
	// loc is below the written location: a put of its new value, if it changed.
	if c.gone {
		return Event{Rev: c.rev, Path: "/", Data: []byte("null")}, true
	}
	if _, found := slices.BinarySearch(c.below, loc.inRoom()); !found {
		return Event{}, false
	}
	return Event{Rev: c.rev, Path: "/", Data: c.valueBelow(loc)}, true
}

// valueBelow is the new value of loc, strictly below c.at.
func (c *change) valueBelow(loc Path) []byte {
	name := loc.inRoom()
	c.memoMu.Lock()
	defer c.memoMu.Unlock()
	if v, ok := c.memo[name]; ok {
		return v
	}
	v := c.extractBelow(loc)
	if c.memo == nil {
		c.memo = make(map[string][]byte)
	}
	c.memo[name] = v
	return v
}

func (c *change) extractBelow(loc Path) []byte {
	if !c.patch {
		if c.at.Depth() == 0 {
			return extract(c.data, loc.Key, loc.Child)
		}
		return extract(c.data, loc.Child)
	}
	if c.at.Depth() == 1 {
		return extract(c.data, loc.Child)
	}
	// A patch of the room: members are "key" or "key/child".
	if loc.Child == "" {
		for _, im := range c.images {
			if im.key == loc.Key {
				return im.data
			}
		}
		return extract(c.data, loc.Key)
	}
	if v := extract(c.data, loc.Key+"/"+loc.Child); string(v) != "null" {
		return v
	}
	return extract(c.data, loc.Key, loc.Child)
}

// extract follows member names (or array indices) down a JSON value; "null"
// where one is missing.
func extract(data []byte, names ...string) []byte {
	for _, name := range names {
		if name == "" {
			continue
		}
		if isArray(data) {
			// A key read back as an array: its children are its indices.
			var elems []json.RawMessage
			idx := arrayIndex(name)
			if json.Unmarshal(data, &elems) != nil || idx < 0 || idx >= len(elems) {
				return []byte("null")
			}
			data = elems[idx]
			continue
		}
		if !isObject(data) {
			return []byte("null")
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return []byte("null")
		}
		v, ok := m[name]
		if !ok {
			return []byte("null")
		}
		data = v
	}
	return data
}
