package store

import "time"

type writeKind uint8

const (
	writePut   writeKind = iota // PUT and DELETE
	writePush                   // POST
	writePatch                  // PATCH
)

// Write is one parsed, validated write, ready for an engine: Store makes
// them, an engine loads the room (Needs) and applies it (Room.Apply).
type Write struct {
	kind writeKind
	at   Path
	cond Cond

	room      []roomKey     // put of a room
	key       keyValue      // put of a key
	child     []byte        // put of a child, push
	members   []patchMember // patch
	patchJSON []byte        // patch
	// serverValues: the values hold {".sv":…} placeholders, resolved at
	// commit (resolveServerValues).
	serverValues bool
}

// RemoveRoom is the write that deletes a whole room: the TTL sweeper's.
func RemoveRoom(room string) *Write { return &Write{kind: writePut, at: Path{Room: room}} }

// Room is the room the write changes.
func (w *Write) Room() string { return w.at.Room }

// Needs says which keys of the room Apply reads: all of them, or those
// named (sorted). An engine that keeps a room's keys apart loads just these.
func (w *Write) Needs() (all bool, keys []string) {
	switch {
	case w.at.Depth() > 0:
		return false, []string{w.at.Key}
	case w.kind == writePatch && !w.cond.Set:
		for _, m := range w.members {
			if n := len(keys); n == 0 || keys[n-1] != m.key {
				keys = append(keys, m.key)
			}
		}
		return false, keys
	}
	return true, nil
}

// NamePush gives a push its child's name, a fresh push id, before Apply; it
// does nothing to other writes. ids must be used in commit order, so that
// push ids sort as their writes commit.
func (w *Write) NamePush(ids *PushIDs, now time.Time) {
	if w.kind == writePush && w.at.Child == "" {
		w.at.Child = ids.next(now)
	}
}

// condAt is the location whose revision the precondition is about: a push's
// is its key's, as is the ETag it reports.
func (w *Write) condAt() Path {
	at := w.at
	if w.kind == writePush {
		at.Child = ""
	}
	return at
}

// At is the result of a write committed at revision rev.
func (r Result) At(rev uint64) Result {
	r.Rev, r.ETag = rev, 0
	if r.present {
		r.ETag = rev
	}
	return r
}
