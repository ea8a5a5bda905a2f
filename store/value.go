package store

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// keyValue is what one key holds: a leaf (compact JSON that is not an object),
// children sorted by name, or nothing at all (absent).
type keyValue struct {
	leaf     []byte
	children []childValue
}

// childValue is one child of a key: its name and its compact JSON value.
type childValue struct {
	name string
	data []byte
}

// patchMember is one member of a PATCH body, resolved against the patched
// location: Key is set for room-level patches, Child for members naming a child.
type patchMember struct {
	key, child string
	keyValue   keyValue // when child == ""
	childData  []byte   // when child != ""; nil deletes
}

func (v keyValue) absent() bool { return v.leaf == nil && len(v.children) == 0 }

func (v keyValue) child(name string) []byte {
	i, ok := slices.BinarySearchFunc(v.children, name, func(c childValue, n string) int { return strings.Compare(c.name, n) })
	if !ok {
		return nil
	}
	return v.children[i].data
}

func (v keyValue) equal(w keyValue) bool {
	if !bytes.Equal(v.leaf, w.leaf) || len(v.children) != len(w.children) {
		return false
	}
	for i := range v.children {
		if v.children[i].name != w.children[i].name || !bytes.Equal(v.children[i].data, w.children[i].data) {
			return false
		}
	}
	return true
}

// appendJSON writes the value as JSON, "null" when absent; children named
// "0", "1", … read as an array, as Firebase reads them (appendCollection).
func (v keyValue) appendJSON(b []byte) []byte {
	switch {
	case v.leaf != nil:
		return append(b, v.leaf...)
	case len(v.children) == 0:
		return append(b, "null"...)
	}
	return appendCollection(b, len(v.children), func(i int) (string, []byte) { return v.children[i].name, v.children[i].data })
}

func (v keyValue) json() []byte { return v.appendJSON(nil) }

// appendMember writes "name":data. Names are [A-Za-z0-9_-] (or key/child),
// so they need no escaping.
func appendMember(b []byte, name string, data []byte) []byte {
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return append(b, data...)
}

func roomJSON(keys []roomKey) []byte {
	if len(keys) == 0 {
		return []byte("null")
	}
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendMember(b, k.name, k.value.json())
	}
	return append(b, '}')
}

// parseChild normalizes a value at child level, where JSON is free-form: it is
// compacted; null and {} mean absent (nil).
func parseChild(raw []byte) ([]byte, error) {
	b, err := compact(raw)
	if err != nil {
		return nil, err
	}
	return childOf(b), nil
}

// childOf is a compact child value in normal form, or nil when it holds
// nothing (null, {}, [], or objects of only those).
func childOf(b []byte) []byte { return normalize(b) }

// parseKey normalizes a key's value: an object becomes children (names must
// be valid child names; null or empty members vanish), anything else a leaf.
func parseKey(raw []byte) (keyValue, error) {
	b, err := compact(raw)
	if err != nil {
		return keyValue{}, err
	}
	return keyOf(b)
}

// keyOf normalizes a compact key value. An array is stored as children
// named by index, so they are addressable as Firebase's are.
func keyOf(b []byte) (keyValue, error) {
	if isServerValue(b) {
		return keyValue{leaf: b}, nil
	}
	if b[0] == '[' {
		var v keyValue
		for i, e := range arrayElements(b) {
			if data := childOf(e); data != nil {
				v.children = append(v.children, childValue{name: strconv.Itoa(i), data: data})
			}
		}
		slices.SortFunc(v.children, func(a, b childValue) int { return strings.Compare(a.name, b.name) })
		return v, nil
	}
	if b[0] != '{' {
		return keyValue{leaf: childOf(b)}, nil
	}
	members, err := objectMembers(b, "child")
	if err != nil {
		return keyValue{}, err
	}
	var v keyValue
	for _, m := range members {
		if data := childOf(m.value); data != nil {
			v.children = append(v.children, childValue{name: m.name, data: data})
		}
	}
	return v, nil
}

// parseRoom normalizes a room's value: an object of keys, or null.
func parseRoom(raw []byte) ([]roomKey, error) {
	b, err := compact(raw)
	if err != nil {
		return nil, err
	}
	if string(b) == "null" {
		return nil, nil
	}
	if b[0] != '{' {
		return nil, fmt.Errorf("%w: a room's value must be an object or null", ErrInvalidValue)
	}
	members, err := objectMembers(b, "key")
	if err != nil {
		return nil, err
	}
	var keys []roomKey
	for _, m := range members {
		v, err := keyOf(m.value)
		if err != nil {
			return nil, err
		}
		if !v.absent() {
			keys = append(keys, roomKey{name: m.name, value: v})
		}
	}
	return keys, nil
}

// parsePatch normalizes a PATCH body for location at (a room or a key). It
// returns the members sorted by name and the patch object as written to
// watchers (normalized values, null for deletions).
func parsePatch(at Path, raw []byte) ([]patchMember, []byte, error) {
	if at.Depth() > 1 {
		return nil, nil, fmt.Errorf("%w: PATCH needs a room or key location", ErrInvalidPath)
	}
	b, err := compact(raw)
	if err != nil {
		return nil, nil, err
	}
	if b[0] != '{' {
		return nil, nil, fmt.Errorf("%w: a PATCH body must be an object", ErrInvalidValue)
	}
	members, err := objectMembers(b, "")
	if err != nil {
		return nil, nil, err
	}
	out := make([]patchMember, 0, len(members))
	for _, mb := range members {
		m, err := parseMember(at, mb.name, mb.value)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, m)
	}
	// Sorted by key then child, a whole-key member comes right before the
	// members naming its children, so overlaps are neighbours.
	slices.SortFunc(out, func(a, b patchMember) int {
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.child, b.child))
	})
	for i, m := range out {
		if i > 0 && m.key == out[i-1].key && out[i-1].child == "" {
			return nil, nil, fmt.Errorf("%w: PATCH members %q and %q overlap", ErrInvalidPath, m.key, m.key+"/"+m.child)
		}
	}
	return out, patchObject(at, out), nil
}

// patchObject is a PATCH of at as watchers get it: the members with their
// normalized values, null for deletions.
func patchObject(at Path, members []patchMember) []byte {
	obj := []byte{'{'}
	for i, m := range members {
		if i > 0 {
			obj = append(obj, ',')
		}
		obj = appendMember(obj, m.name(at), m.json())
	}
	return append(obj, '}')
}

func parseMember(at Path, name string, raw []byte) (patchMember, error) {
	key, child, nested := strings.Cut(name, "/")
	if at.Depth() == 1 {
		key, child = at.Key, name
		nested = true
	}
	if !validName(key, MaxKeyName) || nested && !validName(child, MaxKeyName) {
		return patchMember{}, fmt.Errorf("%w: PATCH member %q must name a key or key/child of %s", ErrInvalidPath, clip(name), at)
	}
	m := patchMember{key: key, child: child}
	var err error
	if nested {
		m.childData = childOf(raw)
	} else {
		m.keyValue, err = keyOf(raw)
	}
	return m, err
}

// name is the member's name as written in a PATCH of at.
func (m patchMember) name(at Path) string {
	switch {
	case at.Depth() == 1:
		return m.child
	case m.child != "":
		return m.key + "/" + m.child
	}
	return m.key
}

func (m patchMember) json() []byte {
	if m.child != "" {
		if m.childData == nil {
			return []byte("null")
		}
		return m.childData
	}
	return m.keyValue.json()
}

// compact validates JSON text and removes its insignificant space.
func compact(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidValue, err)
	}
	return buf.Bytes(), nil
}

// member is one member of a JSON object: its unescaped name and its value,
// a slice of the compact object.
type member struct {
	name  string
	value []byte
}

// objectMembers lists the members of a compact JSON object, sorted by name;
// of duplicate names the last wins, as in JSON.parse. what is "key" or
// "child" to check names, "" to leave them to the caller.
func objectMembers(obj []byte, what string) ([]member, error) {
	var ms []member
	for i := 1; i < len(obj) && obj[i] != '}'; {
		end := stringEnd(obj, i)
		name := string(obj[i+1 : end-1])
		if bytes.IndexByte(obj[i:end], '\\') >= 0 {
			if err := json.Unmarshal(obj[i:end], &name); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrInvalidValue, err)
			}
		}
		if what != "" && !validName(name, MaxKeyName) {
			return nil, fmt.Errorf("%w: %s name %q must match [A-Za-z0-9_-]{1,64}", ErrInvalidValue, what, clip(name))
		}
		start := end + 1 // past the colon
		i = valueEnd(obj, start)
		ms = append(ms, member{name: name, value: obj[start:i]})
		if i < len(obj) && obj[i] == ',' {
			i++
		}
	}
	slices.SortStableFunc(ms, func(a, b member) int { return strings.Compare(a.name, b.name) })
	out := ms[:0]
	for i, m := range ms {
		if i+1 < len(ms) && ms[i+1].name == m.name {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// stringEnd is the index just past the JSON string starting at b[i] ('"').
// b is valid compact JSON.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd is the index just past the JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
		if depth == 0 && (b[i] == '"' || b[i] == '}' || b[i] == ']') {
			return i + 1
		}
	}
	return i
}

func isArray(raw []byte) bool {
	b := trimJSONSpace(raw)
	return len(b) > 0 && b[0] == '['
}

func isObject(raw []byte) bool {
	b := trimJSONSpace(raw)
	return len(b) > 0 && b[0] == '{'
}

// trimJSONSpace trims the four whitespace characters JSON allows.
func trimJSONSpace(b []byte) []byte { return bytes.Trim(b, " \t\r\n") }

// checkText rejects bodies that are not UTF-8: JSON text must be.
func checkText(raw []byte) error {
	if !utf8.Valid(raw) {
		return fmt.Errorf("%w: body is not valid UTF-8", ErrInvalidValue)
	}
	return nil
}
