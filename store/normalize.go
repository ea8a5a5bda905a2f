package store

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// normalize puts a compact JSON value in the form Firebase stores and
// returns: null members are dropped at every depth, an object or array that
// is or becomes empty is gone, and arrays are objects keyed "0", "1", …
// that read back as arrays while their keys are mostly sequential
// (arrayLength). It returns nil when nothing is left.
func normalize(b []byte) []byte {
	if !needsNormalizing(b) {
		return b
	}
	out, ok := appendNormal(nil, b)
	if !ok {
		return nil
	}
	return out
}

// needsNormalizing is a quick scan for what normalize may change: a null,
// an empty object or array, or an object member named like an array index.
// Most values (SDP strings, candidates) have none, and a false alarm (such
// text inside a string) only costs the slow path.
func needsNormalizing(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case 'n':
			if bytes.HasPrefix(b[i:], []byte("null")) {
				return true
			}
		case '{', '[':
			if i+1 < len(b) && (b[i+1] == '}' || b[i+1] == ']') {
				return true
			}
			fallthrough
		case ',':
			if i+2 < len(b) && b[i+1] == '"' && b[i+2] >= '0' && b[i+2] <= '9' {
				return true
			}
		}
	}
	return false
}

// appendNormal appends the normal form of the valid compact value v; ok is
// false when v normalizes to nothing.
func appendNormal(out, v []byte) ([]byte, bool) {
	var kept []member
	switch v[0] {
	case 'n':
		return out, false
	case '{':
		members, _ := objectMembers(v, "") // v is valid JSON: no error
		for _, m := range members {
			if nv, ok := appendNormal(nil, m.value); ok {
				kept = append(kept, member{name: m.name, value: nv})
			}
		}
	case '[':
		for i, e := range arrayElements(v) {
			if nv, ok := appendNormal(nil, e); ok {
				kept = append(kept, member{name: strconv.Itoa(i), value: nv})
			}
		}
	default:
		return append(out, v...), true
	}
	if len(kept) == 0 {
		return out, false
	}
	return appendCollection(out, len(kept), func(i int) (string, []byte) { return kept[i].name, kept[i].value }), true
}

// appendCollection writes n named values as Firebase reads them back: an
// array when arrayLength says so (absent indices as null), else an object.
func appendCollection(b []byte, n int, at func(int) (string, []byte)) []byte {
	length, isArray := arrayLength(n, func(i int) string { name, _ := at(i); return name })
	if !isArray {
		b = append(b, '{')
		for i := range n {
			if i > 0 {
				b = append(b, ',')
			}
			name, data := at(i)
			b = appendJSONString(b, name)
			b = append(b, ':')
			b = append(b, data...)
		}
		return append(b, '}')
	}
	slots := make([][]byte, length)
	for i := range n {
		name, data := at(i)
		slots[arrayIndex(name)] = data
	}
	b = append(b, '[')
	for i, data := range slots {
		if i > 0 {
			b = append(b, ',')
		}
		if data == nil {
			data = []byte("null")
		}
		b = append(b, data...)
	}
	return append(b, ']')
}

// arrayLength decides, as Firebase does, whether n members read as an array:
// every name is an array index and the largest is below twice their number
// (so at least about half the slots hold a value). length is max index + 1.
func arrayLength(n int, name func(int) string) (length int, ok bool) {
	if n == 0 {
		return 0, false
	}
	maxIndex := -1
	for i := range n {
		idx := arrayIndex(name(i))
		if idx < 0 {
			return 0, false
		}
		maxIndex = max(maxIndex, idx)
	}
	if maxIndex >= 2*n {
		return 0, false
	}
	return maxIndex + 1, true
}

// arrayIndex is the index a member name stands for, or -1: "0" or a decimal
// without leading zeros, below a billion.
func arrayIndex(name string) int {
	if name == "" || len(name) > 9 || name[0] == '0' && len(name) > 1 {
		return -1
	}
	idx := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < '0' || c > '9' {
			return -1
		}
		idx = idx*10 + int(c-'0')
	}
	return idx
}

// arrayElements lists the elements of a valid compact JSON array.
func arrayElements(arr []byte) [][]byte {
	var es [][]byte
	for i := 1; i < len(arr) && arr[i] != ']'; {
		end := valueEnd(arr, i)
		es = append(es, arr[i:end])
		i = end
		if i < len(arr) && arr[i] == ',' {
			i++
		}
	}
	return es
}

// appendJSONString appends s as a JSON string, escaping only what JSON
// requires.
func appendJSONString(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
