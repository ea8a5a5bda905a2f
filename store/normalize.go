package store

import (
	"bytes"
	"encoding/json"
)

// normalize puts a compact JSON value in the form Firebase stores: null
// members are dropped at every depth, and an object or array that is or
// becomes empty is gone. It returns nil when nothing is left.
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

// needsNormalizing is a quick scan for what normalize changes: a null or an
// empty object or array anywhere. Most values (SDP strings, candidates) have neither,
// and a false alarm (the text "null" inside a string) only costs the slow
// path.
func needsNormalizing(b []byte) bool {
	return bytes.Contains(b, []byte("null")) || bytes.Contains(b, []byte("{}")) || bytes.Contains(b, []byte("[]"))
}

// appendNormal appends the normal form of the valid compact value v; ok is
// false when v normalizes to nothing.
func appendNormal(out, v []byte) ([]byte, bool) {
	switch v[0] {
	case 'n':
		return out, false
	case '{':
		members, _ := objectMembers(v, "") // v is valid JSON: no error
		start := len(out)
		out = append(out, '{')
		n := 0
		for _, m := range members {
			mark := len(out)
			if n > 0 {
				out = append(out, ',')
			}
			out = appendJSONString(out, m.name)
			out = append(out, ':')
			var ok bool
			if out, ok = appendNormal(out, m.value); !ok {
				out = out[:mark]
				continue
			}
			n++
		}
		if n == 0 {
			return out[:start], false
		}
		return append(out, '}'), true
	case '[':
		// An element that normalizes to nothing reads as null in place, so
		// the other elements keep their indices.
		start := len(out)
		out = append(out, '[')
		n := 0
		for i, e := range arrayElements(v) {
			if i > 0 {
				out = append(out, ',')
			}
			var ok bool
			if out, ok = appendNormal(out, e); ok {
				n++
			} else {
				out = append(out, "null"...)
			}
		}
		if n == 0 {
			return out[:start], false
		}
		return append(out, ']'), true
	}
	return append(out, v...), true
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
