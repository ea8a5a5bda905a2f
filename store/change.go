package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Event is one change as a watcher of some location sees it: a put of a
// value at Path (relative to the watched location) or a patch of members.
type Event struct {
	Rev   uint64
	Patch bool   // a "patch" event; otherwise "put"
	Path  string // "/" or "/key", "/key/child", "/child"
	Data  []byte // compact JSON: the value, or the patch object

	shared *sharedEvent // set on live events: what watchers of its location share
}

// String is the event as tests and logs show it: "rev:put /path data".
func (e Event) String() string {
	kind := "put"
	if e.Patch {
		kind = "patch"
	}
	return fmt.Sprintf("%d:%s %s %s", e.Rev, kind, e.Path, e.Data)
}

// Change is one committed write of a room, as kept in the change log and
// handed to watchers. Everything a watcher of any location in the room needs
// is here, so replay from the log and live delivery agree.
type Change struct {
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

	sharedMu sync.Mutex
	shared   map[Path]*sharedEvent // per watched location, for live delivery
}

type image struct {
	key  string
	data []byte
}

// Rev is the change's revision.
func (c *Change) Rev() uint64 { return c.rev }

// Room is the room the change is of.
func (c *Change) Room() string { return c.at.Room }

// RoomGone is the change that ends a room at revision rev, for an engine
// whose storage deleted it (an etcd lease that ran out).
func RoomGone(room string, rev uint64) *Change {
	return &Change{rev: rev, at: Path{Room: room}, data: []byte("null"), gone: true}
}

// size approximates the change's memory, for the watcher queue bound.
func (c *Change) size() int { return 128 + len(c.data) + 16*len(c.below) }

// eventFor projects the change onto a watcher of loc (same room).
func (c *Change) eventFor(loc Path) (Event, bool) {
	if loc.Contains(c.at) {
		return Event{Rev: c.rev, Patch: c.patch, Path: loc.relative(c.at), Data: c.data}, true
	}
	if !c.at.Contains(loc) {
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
func (c *Change) valueBelow(loc Path) []byte {
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

func (c *Change) extractBelow(loc Path) []byte {
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

// A Change encoded (Encode, DecodeChange) for a change log: a version byte, flags, the location inside the room,
// the data, the changed locations below it, and key images (see change).

const changeVersion = 1

const (
	flagPatch = 1 << iota
	flagGone
)

func (c *Change) Encode() []byte {
	return c.AppendEncoded(make([]byte, 0, 16+len(c.at.Key)+len(c.at.Child)+len(c.data)))
}

// AppendEncoded appends the change as Encode writes it to b.
func (c *Change) AppendEncoded(b []byte) []byte {
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

func DecodeChange(room string, rev uint64, b []byte) (*Change, error) {
	r := reader{b: b}
	if v := r.byte(); v != changeVersion {
		return nil, fmt.Errorf("change %d of %s has version %d: %w", rev, room, v, ErrCorrupt)
	}
	flags := r.byte()
	c := &Change{rev: rev, patch: flags&flagPatch != 0, gone: flags&flagGone != 0}
	c.at = Path{Room: room, Key: r.string(), Child: r.string()}
	c.data = []byte(r.string())
	for n := r.count(); n > 0 && r.err == nil; n-- {
		c.below = append(c.below, r.string())
	}
	for n := r.count(); n > 0 && r.err == nil; n-- {
		c.images = append(c.images, image{key: r.string(), data: []byte(r.string())})
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, fmt.Errorf("change %d of %s: %w", rev, room, ErrCorrupt)
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
		r.err = ErrCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	n, w := binary.Uvarint(r.b)
	if w <= 0 {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[w:]
	return n
}

func (r *reader) count() uint64 {
	n, w := binary.Uvarint(r.b)
	if w <= 0 || n > uint64(len(r.b)) {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[w:]
	return n
}

func (r *reader) string() string {
	n := r.count()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = ErrCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// FrameKeys bounds the keys of Event.Frame: a caller has this many
// encodings (framings) of an event that it may memoize.
const FrameKeys = 4

// sharedEvent is one change as every watcher of one location sees it live:
// the projection, made once, and the frames encoded from it by the first
// watcher to need each, reused by the others. It lives as long as the change
// is queued or held by a watcher.
type sharedEvent struct {
	ev     Event
	ok     bool
	mu     sync.Mutex // taken to encode a frame
	frames [FrameKeys]atomic.Pointer[[]byte]
}

// sharedEventFor is eventFor for live delivery: watchers of the same location
// share one Event, and through Event.Frame its encodings.
func (c *Change) sharedEventFor(loc Path) (Event, bool) {
	c.sharedMu.Lock()
	sh := c.shared[loc]
	c.sharedMu.Unlock()
	if sh != nil {
		return sh.ev, sh.ok
	}
	ev, ok := c.eventFor(loc) // outside the lock: watchers of other locations go on
	c.sharedMu.Lock()
	if sh = c.shared[loc]; sh == nil {
		sh = &sharedEvent{ev: ev, ok: ok}
		sh.ev.shared = sh
		if c.shared == nil {
			c.shared = make(map[Path]*sharedEvent)
		}
		c.shared[loc] = sh
	}
	c.sharedMu.Unlock()
	return sh.ev, sh.ok
}

// Frame returns encode(e), encoded once for every watcher of the event's
// location that asks with the same key (0 <= key < FrameKeys): the first
// caller encodes, the others get the very same bytes, which nobody may
// modify. ok is false, and encode is not called, when the event has nothing
// to share: a snapshot, a change replayed from the log, an event the caller
// built or altered, or a key out of range. Then the caller encodes it itself.
func (e Event) Frame(key int, encode func(Event) []byte) (frame []byte, ok bool) {
	sh := e.shared
	if sh == nil || key < 0 || key >= FrameKeys || !sh.is(e) {
		return nil, false
	}
	if b := sh.frames[key].Load(); b != nil {
		return *b, true
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b := sh.frames[key].Load(); b != nil {
		return *b, true
	}
	b := encode(sh.ev)
	sh.frames[key].Store(&b)
	return b, true
}

// is reports whether e is still the shared event, as Next handed it out.
func (sh *sharedEvent) is(e Event) bool {
	return e.Rev == sh.ev.Rev && e.Patch == sh.ev.Patch && e.Path == sh.ev.Path &&
		len(e.Data) == len(sh.ev.Data) && (len(e.Data) == 0 || &e.Data[0] == &sh.ev.Data[0])
}
