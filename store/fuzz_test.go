package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/sigbase/sigbase/store/internal/model"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var (
	roomNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	keyNameRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

func FuzzNewPath(f *testing.F) {
	f.Add("r1", "", "")                                          // a room
	f.Add("r1", "offer", "")                                     // a key
	f.Add("r1", "callerCandidates", "-OCx3kT1AAAAAAAAAAAA")      // a child named by a push id
	f.Add("", "", "")                                            // nothing
	f.Add("r1", "", "c")                                         // a child without a key
	f.Add("r1", "a/b", "")                                       // a deeper path in a name
	f.Add("r\x00", "k", "")                                      // the record separator
	f.Add(strings.Repeat("r", 129), "k", "c")                    // a room name too long
	f.Add("r", strings.Repeat("k", 64), strings.Repeat("c", 65)) // longest key, child too long
	f.Add("rööm", "k", "c")                                      // non-ASCII
	f.Fuzz(func(t *testing.T, room, key, child string) {
		p, err := NewPath(room, key, child)
		want := roomNameRE.MatchString(room) &&
			(key == "" && child == "" || keyNameRE.MatchString(key) && (child == "" || keyNameRE.MatchString(child)))
		if (err == nil) != want {
			t.Fatalf("NewPath(%q, %q, %q): err %v, want valid %v", room, key, child, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) || p != (Path{}) {
				t.Fatalf("NewPath(%q, %q, %q) = %+v, %v; want ErrInvalidPath", room, key, child, p, err)
			}
			return
		}
		if p != (Path{room, key, child}) || p.check() != nil {
			t.Fatalf("NewPath(%q, %q, %q) = %+v", room, key, child, p)
		}
		// String is the URL path; splitting it gives the names back.
		parts := strings.Split(strings.TrimPrefix(p.String(), "/rooms/"), "/")
		for len(parts) < 3 {
			parts = append(parts, "")
		}
		if q, err := NewPath(parts[0], parts[1], parts[2]); err != nil || q != p {
			t.Fatalf("%+v.String() = %q re-parses to %+v, %v", p, p.String(), q, err)
		}
		if !p.Contains(p) || p.relative(p) != "/" || p.Depth() != len(model.Segments(p.Key, p.Child)) {
			t.Fatalf("%+v: contains itself %v, relative %q, depth %d", p, p.Contains(p), p.relative(p), p.Depth())
		}
		if room := (Path{Room: p.Room}); !room.Contains(p) || room.relative(p) != "/"+p.inRoom() && p.Depth() > 0 {
			t.Fatalf("room of %+v: contains %v, relative %q", p, room.Contains(p), room.relative(p))
		}
	})
}

// checkNormalized: the store's output is compact valid JSON without newlines.
func checkNormalized(t *testing.T, what string, out []byte) {
	t.Helper()
	if !json.Valid(out) || !model.IsCompact(out) || bytes.ContainsAny(out, "\n\r") {
		t.Fatalf("%s: %q is not compact JSON on one line", what, out)
	}
}

// decodeAny decodes JSON, numbers as their text (1e400 is valid JSON);
// ok is false when the text is not one JSON value.
func decodeAny(b []byte) (any, bool) {
	if !json.Valid(b) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	return v, dec.Decode(&v) == nil
}

// fuzzValueSeeds are bodies for the value parsers, each with what it covers.
var fuzzValueSeeds = []string{
	`{"offer":{"type":"offer","sdp":"v=0\r\n"}}`, // a room with an offer
	`{"a":{"x":1,"y":null,"z":{}},"b":null}`,     // null and {} members vanish
	`{}`,                                         // empty: absent
	`null`,                                       // absent
	` { "a" : [ 1 , 2 ] } `,                      // whitespace to compact
	`{"a":1}{"b":2}`,                             // trailing data
	`{"a":1,"a":{"x":2}}`,                        // a duplicate member: the last wins
	`{"bad name":1}`,                             // an invalid name
	`{"a\u0000":1}`,                              // an escaped NUL in a name
	`{"\u0061":{"\u0078":"\u00e9"}}`,             // escaped names that are valid
	`"\u2028\ud800"`,                             // a lone surrogate escape
	"\"\xff\"",                                   // invalid UTF-8
	`[{"a":{}}]`,                                 // free-form below a leaf
	`1e400`,                                      // a number out of float range
	`{"a/b":1,"a":2}`,                            // PATCH members that overlap
	`{"a/b":null,"c/d":{"e":{}}}`,                // PATCH members naming children
	`{"a/b/c":1}`,                                // a PATCH member too deep
	``,                                           // nothing
	`tru`,                                        // a truncated literal
}

func FuzzParseChild(f *testing.F) {
	for _, s := range fuzzValueSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := parseChild(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidValue) {
				t.Fatalf("parseChild(%q): %v, want ErrInvalidValue", raw, err)
			}
			if json.Valid(raw) {
				t.Fatalf("parseChild(%q) refused valid JSON: %v", raw, err)
			}
			return
		}
		in, ok := decodeAny(raw)
		if !ok {
			t.Fatalf("parseChild(%q) accepted what encoding/json refuses", raw)
		}
		if out == nil {
			if model.NormAt(2, in) != nil {
				t.Fatalf("parseChild(%q) = absent", raw)
			}
			return
		}
		checkNormalized(t, "parseChild", out)
		if got, _ := decodeAny(out); !reflect.DeepEqual(got, model.RenderAt(2, model.NormAt(2, in))) {
			t.Fatalf("parseChild(%q) = %s: another value", raw, out)
		}
		if again, err := parseChild(out); err != nil || !bytes.Equal(again, out) {
			t.Fatalf("parseChild(%q) = %s, which re-parses to %s, %v", raw, out, again, err)
		}
	})
}

func FuzzParseKey(f *testing.F) {
	for _, s := range fuzzValueSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := parseKey(raw)
		in, ok := decodeAny(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidValue) {
				t.Fatalf("parseKey(%q): %v, want ErrInvalidValue", raw, err)
			}
			if ok && utf8.Valid(raw) && childNamesValid(in) {
				t.Fatalf("parseKey(%q) refused valid JSON with valid names: %v", raw, err)
			}
			return
		}
		if !ok {
			t.Fatalf("parseKey(%q) accepted what encoding/json refuses", raw)
		}
		out := v.json()
		checkNormalized(t, "parseKey", out)
		if v.leaf != nil && v.children != nil || !slices.IsSortedFunc(v.children, func(a, b childValue) int { return strings.Compare(a.name, b.name) }) {
			t.Fatalf("parseKey(%q) = %+v: both leaf and children, or children unsorted", raw, v)
		}
		if got, _ := decodeAny(out); !reflect.DeepEqual(got, model.RenderAt(1, model.NormAt(1, in))) {
			t.Fatalf("parseKey(%q) = %s: another value than %s", raw, out, model.MustJSON(model.RenderAt(1, model.NormAt(1, in))))
		}
		if again, err := parseKey(out); err != nil || !again.equal(v) {
			t.Fatalf("parseKey(%q) = %s, which re-parses to %s, %v", raw, out, again.json(), err)
		}
	})
}

func childNamesValid(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return true
	}
	for name := range m {
		if !keyNameRE.MatchString(name) {
			return false
		}
	}
	return true
}

func FuzzParseRoom(f *testing.F) {
	for _, s := range fuzzValueSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		keys, err := parseRoom(raw)
		in, ok := decodeAny(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidValue) {
				t.Fatalf("parseRoom(%q): %v, want ErrInvalidValue", raw, err)
			}
			return
		}
		if !ok {
			t.Fatalf("parseRoom(%q) accepted what encoding/json refuses", raw)
		}
		if _, isMap := in.(map[string]any); !isMap && in != nil {
			t.Fatalf("parseRoom(%q) accepted a non-object", raw)
		}
		out := roomJSON(keys)
		checkNormalized(t, "parseRoom", out)
		if got, _ := decodeAny(out); !reflect.DeepEqual(got, model.RenderAt(0, model.NormAt(0, in))) {
			t.Fatalf("parseRoom(%q) = %s: another value than %s", raw, out, model.MustJSON(model.RenderAt(0, model.NormAt(0, in))))
		}
		again, err := parseRoom(out)
		if err != nil || !reflect.DeepEqual(again, keys) {
			t.Fatalf("parseRoom(%q) = %s, which re-parses to %s, %v", raw, out, roomJSON(again), err)
		}
	})
}

func FuzzParsePatch(f *testing.F) {
	for _, s := range fuzzValueSeeds {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, keyLevel bool, raw []byte) {
		at := Path{Room: "r"}
		if keyLevel {
			at.Key = "k"
		}
		members, obj, err := parsePatch(at, raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidValue) && !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("parsePatch(%s, %q): %v, want ErrInvalidValue or ErrInvalidPath", at, raw, err)
			}
			return
		}
		in, ok := decodeAny(raw)
		if !ok {
			t.Fatalf("parsePatch(%s, %q) accepted what encoding/json refuses", at, raw)
		}
		checkNormalized(t, "parsePatch", obj)
		// Members are sorted, valid and do not overlap.
		for i, m := range members {
			if !keyNameRE.MatchString(m.key) || m.child != "" && !keyNameRE.MatchString(m.child) || keyLevel && (m.key != "k" || m.child == "") {
				t.Fatalf("parsePatch(%s, %q): member %+v", at, raw, m)
			}
			if i > 0 && (m.key < members[i-1].key || m.key == members[i-1].key && (m.child <= members[i-1].child || members[i-1].child == "")) {
				t.Fatalf("parsePatch(%s, %q): members %+v then %+v: unsorted or overlapping", at, raw, members[i-1], m)
			}
		}
		// The patch object holds each member, normalized for its depth.
		want := map[string]any{}
		for name, v := range in.(map[string]any) {
			depth := at.Depth() + 1 + strings.Count(name, "/")
			want[name] = model.RenderAt(depth, model.NormAt(depth, v))
		}
		if got, _ := decodeAny(obj); !reflect.DeepEqual(got, want) {
			t.Fatalf("parsePatch(%s, %q) = %s, want %s", at, raw, obj, model.MustJSON(want))
		}
		again, obj2, err := parsePatch(at, obj)
		if err != nil || !bytes.Equal(obj2, obj) || len(again) != len(members) {
			t.Fatalf("parsePatch(%s, %q) = %s, which re-parses to %s, %v", at, raw, obj, obj2, err)
		}
	})
}

func FuzzDecodeChange(f *testing.F) {
	for _, c := range []*Change{
		{at: Path{Room: "r"}, data: []byte(`{"a":1}`), below: []string{"a"}},                                                                  // a room PUT
		{at: Path{Room: "r"}, data: []byte(`null`), gone: true},                                                                               // a room deleted
		{at: Path{Room: "r", Key: "k", Child: "c"}, data: []byte(`"v"`)},                                                                      // a child PUT
		{at: Path{Room: "r"}, patch: true, data: []byte(`{"k/c":1}`), below: []string{"k", "k/c"}, images: []image{{"k", []byte(`{"c":1}`)}}}, // a room PATCH with a key image
	} {
		f.Add(c.Encode())
	}
	f.Add([]byte{})                                               // empty
	f.Add([]byte{changeVersion, 0, 0xff, 0xff, 0xff, 0xff, 0xff}) // a length that does not fit
	f.Add([]byte{changeVersion, 0, 0, 0, 0, 0x80})                // a truncated varint
	f.Add([]byte{changeVersion + 1, 0, 0, 0, 0, 0, 0})            // an unknown version
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeChange("r", 7, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeChange(%q): %v, want ErrCorrupt", b, err)
			}
			return
		}
		again, err := DecodeChange("r", 7, c.Encode())
		if err != nil || !sameChange(c, again) {
			t.Fatalf("DecodeChange(%q) = %+v; encoded again it decodes to %+v, %v", b, c, again, err)
		}
		// Projection onto any watcher must not panic.
		for _, p := range []Path{{Room: "r"}, {Room: "r", Key: "k"}, {Room: "r", Key: "k", Child: "c"}, c.at} {
			c.eventFor(p)
		}
	})
}

func FuzzChangeRoundTrip(f *testing.F) {
	f.Add("", "", []byte(`{"a":1}`), false, false, "a,b", "")     // a room PUT changing two keys
	f.Add("k", "", []byte(`{"c":1}`), true, false, "k/c", "")     // a key PATCH
	f.Add("", "", []byte(`null`), false, true, "", "")            // a room deleted
	f.Add("", "", []byte(`{"k/c":1}`), true, false, "k,k/c", "k") // a room PATCH with an image
	f.Fuzz(func(t *testing.T, key, child string, data []byte, patch, gone bool, below, images string) {
		c := &Change{rev: 9, at: Path{Room: "r", Key: key, Child: child}, data: data, patch: patch, gone: gone}
		if below != "" {
			c.below = strings.Split(below, ",")
		}
		if images != "" {
			for _, k := range strings.Split(images, ",") {
				c.images = append(c.images, image{key: k, data: data})
			}
		}
		got, err := DecodeChange("r", 9, c.Encode())
		if err != nil || !sameChange(got, c) {
			t.Fatalf("round trip of %+v: %+v, %v", c, got, err)
		}
	})
}

func sameChange(a, b *Change) bool {
	return a.rev == b.rev && a.at == b.at && a.patch == b.patch && a.gone == b.gone &&
		bytes.Equal(a.data, b.data) && slices.Equal(a.below, b.below) &&
		slices.EqualFunc(a.images, b.images, func(x, y image) bool { return x.key == y.key && bytes.Equal(x.data, y.data) })
}
