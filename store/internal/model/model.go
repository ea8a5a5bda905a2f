// Package model is the data model of shared/API.md as plain decoded JSON,
// for tests to hold the store to: what a write at each depth stores, and
// how a read renders it.
package model

import (
	"bytes"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
)

// The model: a room is decoded JSON (map[string]any) with the rules of
// shared/API.md "Data model", applied by depth (0 room, 1 key, 2 child).
// Maps are never modified in place, so a shallow copy of the rooms map is a
// snapshot of the whole state.

// NormAt normalizes a value written at depth, at every depth alike as
// Firebase does: null, {} and [] mean absent (nil), and so do objects and
// arrays whose members are all absent. An array becomes the object Firebase
// keeps, keyed "0", "1", … (absent elements dropped), so the model holds
// only objects; RenderAt turns them back into arrays for reads.
func NormAt(depth int, v any) any {
	var m map[string]any
	switch v := v.(type) {
	case map[string]any:
		m = v
	case []any:
		m = map[string]any{}
		for i, e := range v {
			m[strconv.Itoa(i)] = e
		}
	default:
		return v
	}
	out := map[string]any{}
	for name, mv := range m {
		if n := NormAt(depth+1, mv); n != nil {
			out[name] = n
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// RenderAt is a model value at depth as a read returns it: below the room,
// an object whose names are all array indices, the largest below twice
// their number, is an array with null for the missing indices (Firebase's
// rule); a room is always an object.
func RenderAt(depth int, v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for name, mv := range m {
		out[name] = RenderAt(depth+1, mv)
	}
	if depth == 0 {
		return out
	}
	maxIndex := -1
	for name := range out {
		i, err := strconv.Atoi(name)
		if err != nil || i < 0 || strconv.Itoa(i) != name || len(name) > 9 {
			return out
		}
		maxIndex = max(maxIndex, i)
	}
	if maxIndex >= 2*len(out) {
		return out
	}
	arr := make([]any, maxIndex+1)
	for name, mv := range out {
		i, _ := strconv.Atoi(name)
		arr[i] = mv
	}
	return arr
}

// SetAt returns cur (a value at depth) with v written at the relative path
// segs. Writing a child under a leaf key replaces the leaf; deleting one
// leaves it.
func SetAt(cur any, depth int, segs []string, v any) any {
	if len(segs) == 0 {
		return NormAt(depth, v)
	}
	m, isMap := cur.(map[string]any)
	if cur != nil && !isMap {
		if SetAt(nil, depth+1, segs[1:], v) == nil {
			return cur
		}
		m = nil
	}
	out := maps.Clone(m)
	if out == nil {
		out = map[string]any{}
	}
	if child := SetAt(out[segs[0]], depth+1, segs[1:], v); child == nil {
		delete(out, segs[0])
	} else {
		out[segs[0]] = child
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// GetAt reads the value at the relative path segs (nil when absent).
func GetAt(cur any, segs []string) any {
	for _, s := range segs {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[s]
	}
	return cur
}

// Segments is a location's path inside its room: its key and child, where
// set.
func Segments(key, child string) []string {
	var s []string
	if key != "" {
		s = append(s, key)
	}
	if child != "" {
		s = append(s, child)
	}
	return s
}

func SplitPath(path string) []string {
	if path == "/" {
		return nil
	}
	return strings.Split(strings.TrimPrefix(path, "/"), "/")
}

// MustJSON is v as JSON, for messages.
func MustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// IsCompact reports whether b is compact JSON.
func IsCompact(b []byte) bool {
	var buf bytes.Buffer
	return json.Compact(&buf, b) == nil && bytes.Equal(buf.Bytes(), b)
}

// pushAlphabet is Firebase's push id alphabet, in ASCII order.
const pushAlphabet = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

// ValidPushID reports whether id is 20 characters of the push alphabet.
func ValidPushID(id string) bool {
	if len(id) != 20 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !strings.Contains(pushAlphabet, id[i:i+1]) {
			return false
		}
	}
	return true
}

// PushTime is the creation time, in Unix milliseconds, that a push id's
// first 8 characters encode.
func PushTime(id string) int64 {
	var ms int64
	for i := range 8 {
		ms = ms*64 + int64(strings.IndexByte(pushAlphabet, id[i]))
	}
	return ms
}
