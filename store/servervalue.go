package store

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Server values, as Firebase has them: {".sv":"timestamp"} and
// {".sv":{"increment":n}} in a written value stand for numbers the server
// fills in at commit. Parsing checks them and keeps them as written (a key
// holding one is a leaf); the writer resolves them against the stored
// values in the same transaction (resolveServerValues).

// checkDotNames refuses member names starting with '.' except a well-formed
// server value, and reports whether the body holds one. A quick scan skips
// the walk for bodies without `".` anywhere.
func checkDotNames(raw []byte) (hasServerValue bool, err error) {
	if !bytes.Contains(raw, []byte(`".`)) {
		return false, nil
	}
	b, err := compact(raw)
	if err != nil {
		return false, nil // the parser reports it
	}
	var walk func(v []byte) error
	walk = func(v []byte) error {
		switch v[0] {
		case '{':
			if isServerValue(v) {
				hasServerValue = true
				return nil
			}
			members, err := objectMembers(v, "")
			if err != nil {
				return err
			}
			for _, m := range members {
				if m.name != "" && m.name[0] == '.' {
					if m.name == ".sv" {
						return fmt.Errorf("%w: a server value must be {\".sv\":\"timestamp\"} or {\".sv\":{\"increment\":<number>}}, alone in its object", ErrInvalidValue)
					}
					return fmt.Errorf("%w: member name %q: names starting with '.' are reserved (only \".sv\" is supported)", ErrInvalidValue, clip(m.name))
				}
				if err := walk(m.value); err != nil {
					return err
				}
			}
		case '[':
			for _, e := range arrayElements(v) {
				if err := walk(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return hasServerValue, walk(b)
}

// isServerValue reports whether the compact value v is exactly a supported
// server value.
func isServerValue(v []byte) bool {
	if !bytes.HasPrefix(v, []byte(`{".sv":`)) || v[len(v)-1] != '}' {
		return false
	}
	inner := v[len(`{".sv":`) : len(v)-1]
	if valueEnd(inner, 0) != len(inner) {
		return false // another member follows
	}
	if string(inner) == `"timestamp"` {
		return true
	}
	_, ok := incrementOf(inner)
	return ok
}

// incrementOf reads {"increment":n}.
func incrementOf(inner []byte) ([]byte, bool) {
	if !bytes.HasPrefix(inner, []byte(`{"increment":`)) || inner[len(inner)-1] != '}' {
		return nil, false
	}
	n := inner[len(`{"increment":`) : len(inner)-1]
	if len(n) == 0 || valueRank(n) != 3 {
		return nil, false
	}
	return n, true
}

// resolveValue replaces the server values in the compact value v, given
// what is stored at the same location (nil or "null" for nothing).
func resolveValue(v, old []byte, now int64) []byte {
	if !bytes.Contains(v, []byte(`".sv"`)) {
		return v
	}
	if isServerValue(v) {
		inner := v[len(`{".sv":`) : len(v)-1]
		if string(inner) == `"timestamp"` {
			return strconv.AppendInt(nil, now, 10)
		}
		n, _ := incrementOf(inner)
		return addNumbers(old, n)
	}
	children := ChildrenOf(v)
	if len(children) == 0 {
		return v
	}
	for i, c := range children {
		children[i].Data = resolveValue(c.Data, extract(orNull(old), c.Name), now)
	}
	return MembersJSON(children)
}

func orNull(b []byte) []byte {
	if b == nil {
		return []byte("null")
	}
	return b
}

// addNumbers is old + n, or n when old is not a number. Two integers add as
// integers while the sum stays within ±2^53; otherwise as doubles.
func addNumbers(old, n []byte) []byte {
	if old == nil || valueRank(old) != 3 {
		return n
	}
	a, aErr := strconv.ParseInt(string(old), 10, 64)
	b, bErr := strconv.ParseInt(string(n), 10, 64)
	const exact = 1 << 53
	if aErr == nil && bErr == nil && a > -exact && a < exact && b > -exact && b < exact {
		if s := a + b; s > -exact && s < exact {
			return strconv.AppendInt(nil, s, 10)
		}
	}
	fa, _ := strconv.ParseFloat(string(old), 64)
	fb, _ := strconv.ParseFloat(string(n), 64)
	s := fa + fb
	if math.IsInf(s, 0) || math.IsNaN(s) {
		return n
	}
	return strconv.AppendFloat(nil, s, 'g', -1, 64)
}

// resolveServerValues returns w with its server values filled in from what
// the room holds now, or w itself when it has none. w is left as it is, so
// a write retried after a failed group commit resolves afresh.
func (r *Room) resolveServerValues(w *Write) *Write {
	if !w.serverValues {
		return w
	}
	now := time.Now().UnixMilli()
	out := *w
	oldKey := func(key string) keyValue { return r.key(key).value }
	switch {
	case w.kind == writePatch:
		out.members = make([]patchMember, len(w.members))
		for i, m := range w.members {
			old := oldKey(m.key)
			if m.child != "" {
				m.childData = resolveValue(m.childData, old.child(m.child), now)
			} else {
				m.keyValue = resolveKey(m.keyValue, old, now)
			}
			out.members[i] = m
		}
		out.patchJSON = patchObject(w.at, out.members)
	case w.at.Depth() == 0:
		out.room = make([]roomKey, len(w.room))
		for i, k := range w.room {
			out.room[i] = roomKey{name: k.name, value: resolveKey(k.value, oldKey(k.name), now)}
		}
	case w.at.Depth() == 1:
		out.key = resolveKey(w.key, oldKey(w.at.Key), now)
	default:
		var old []byte
		if w.kind != writePush {
			old = oldKey(w.at.Key).child(w.at.Child)
		}
		out.child = resolveValue(w.child, old, now)
	}
	return &out
}

// resolveKey fills in a key's server values: a leaf that is one, or those
// in its children.
func resolveKey(v, old keyValue, now int64) keyValue {
	if v.leaf != nil {
		var oldLeaf []byte
		if old.leaf != nil {
			oldLeaf = old.leaf
		}
		return keyValue{leaf: resolveValue(v.leaf, oldLeaf, now)}
	}
	out := keyValue{children: make([]childValue, len(v.children))}
	for i, c := range v.children {
		out.children[i] = childValue{name: c.name, data: resolveValue(c.data, old.child(c.name), now)}
	}
	return out
}
