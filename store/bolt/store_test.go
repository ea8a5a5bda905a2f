package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/internal/model"
	"github.com/sigbase/sigbase/store/storetest"
	bbolt "go.etcd.io/bbolt"
)

// The model test's helpers serve these tests too.
var (
	decode         = storetest.Decode
	loc            = storetest.Loc
	drain          = storetest.Drain
	validPushID    = model.ValidPushID
	decodePushTime = model.PushTime
)

// testStore is a Store opened on a real bbolt file, closed by t.Cleanup. It
// tracks the revision up to which committed changes have been handed to
// watchers (Options.OnCommit runs after the writer published), so tests can
// wait for delivery instead of sleeping.
type testStore struct {
	*store.Store
	eng  *engine
	path string
	pub  *pubTracker
}

type pubTracker struct {
	mu      sync.Mutex
	rev     uint64
	changed chan struct{} // closed and replaced when rev moves
}

// openStore opens a store on a new file in t.TempDir().
func openStore(t testing.TB, opts store.Options) *testStore {
	t.Helper()
	return openPath(t, filepath.Join(t.TempDir(), "sigbase.db"), opts)
}

// openPath is the one opener: it opens the store at path and registers its
// Close with t.Cleanup (closing twice is fine).
func openPath(t testing.TB, path string, opts store.Options) *testStore {
	t.Helper()
	tr := &pubTracker{changed: make(chan struct{})}
	var ep atomic.Pointer[engine]
	user := opts.OnCommit
	opts.OnCommit = func(ops int, elapsed time.Duration, err error) {
		if user != nil {
			user(ops, elapsed, err) // first, so waitPublished also waits for it
		}
		if e := ep.Load(); e != nil {
			// Not Stats().Revision: the writer runs ahead of the publisher
			// (committed is buffered), so that revision may be of a group
			// still waiting to be published.
			tr.set(e.published.Load())
		}
	}
	// Open, keeping the engine for tests that look inside it.
	s, err := store.New(opts, func(h *store.Hub, opts store.Options) (store.Engine, error) {
		e, err := open(path, h, opts, defaultTuning())
		if err == nil {
			ep.Store(e)
		}
		return e, err
	})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return &testStore{Store: s, eng: ep.Load(), path: path, pub: tr}
}

func (p *pubTracker) set(rev uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rev > p.rev {
		p.rev = rev
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// waitPublished waits until every change up to rev was handed to watchers.
func (s *testStore) waitPublished(t testing.TB, rev uint64) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		s.pub.mu.Lock()
		got, ch := s.pub.rev, s.pub.changed
		s.pub.mu.Unlock()
		if got >= rev {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("revision %d not published after 10s (published: %d)", rev, got)
		}
	}
}

// sync waits until everything committed so far reached the watchers.
func (s *testStore) sync(t testing.TB) { t.Helper(); s.waitPublished(t, s.Stats().Revision) }

// TestWaitPublishedLagsTheWriter: the writer acknowledges and commits the
// next group while the publisher is still on the last one, so the tracker
// must not count a revision as published before its group reached the hub.
// (It once took Stats().Revision, so sync could return, and a test stop
// reading its watchers, with the last writes still queued for the
// publisher: TestWatchConcurrent's rare "watcher ... ends at" failure.)
func TestWaitPublishedLagsTheWriter(t *testing.T) {
	t.Parallel()
	entered, release, quit := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var hold atomic.Bool
	hold.Store(true)
	s := openStore(t, store.Options{OnCommit: func(int, time.Duration, error) {
		if !hold.Load() {
			return
		}
		select {
		case entered <- struct{}{}:
			select {
			case <-release:
			case <-quit:
			}
		case <-quit:
		}
	}})
	t.Cleanup(func() { close(quit) }) // before Close: the publisher must not hold
	w := s.watch(t, "r", 0, false)
	drain(t, w)

	type put struct {
		res store.Result
		err error
	}
	first := make(chan put, 1)
	go func() {
		res, err := s.Put(t.Context(), loc(t, "r/a"), []byte("1"), store.Cond{})
		first <- put{res, err}
	}()
	<-entered // the publisher handed group 1 to the hub and holds in its OnCommit
	p := <-first
	if p.err != nil {
		t.Fatalf("put r/a: %v", p.err)
	}
	one := p.res
	two := s.put(t, "r/b", "2") // acknowledged: Stats().Revision is its
	if got := s.Stats().Revision; got != two.Rev {
		t.Fatalf("Stats().Revision = %d, want %d", got, two.Rev)
	}
	release <- struct{}{} // group 1's OnCommit ends: the tracker learns what is published
	<-entered             // group 2 is published; its OnCommit holds before the tracker hears of it
	s.pub.mu.Lock()
	got := s.pub.rev
	s.pub.mu.Unlock()
	if got != one.Rev {
		t.Errorf("after group 1's OnCommit, the tracker says %d is published, want %d (group 2, revision %d, was still queued)", got, one.Rev, two.Rev)
	}
	hold.Store(false)
	release <- struct{}{}
	s.waitPublished(t, two.Rev)
	if evs := drain(t, w); len(evs) != 2 {
		t.Errorf("after waitPublished(%d): %v, want the two puts", two.Rev, evs)
	}
}

func mustPath(t testing.TB, room, key, child string) store.Path {
	t.Helper()
	p, err := store.NewPath(room, key, child)
	if err != nil {
		t.Fatalf("NewPath(%q, %q, %q): %v", room, key, child, err)
	}
	return p
}

func (s *testStore) put(t testing.TB, at, body string) store.Result {
	t.Helper()
	res, err := s.Put(t.Context(), loc(t, at), []byte(body), store.Cond{})
	if err != nil {
		t.Fatalf("Put(%s, %s): %v", at, body, err)
	}
	return res
}

func (s *testStore) patch(t testing.TB, at, body string) store.Result {
	t.Helper()
	res, err := s.Patch(t.Context(), loc(t, at), []byte(body), store.Cond{})
	if err != nil {
		t.Fatalf("Patch(%s, %s): %v", at, body, err)
	}
	return res
}

func (s *testStore) push(t testing.TB, at, body string) store.Result {
	t.Helper()
	res, err := s.Push(t.Context(), loc(t, at), []byte(body), store.Cond{})
	if err != nil {
		t.Fatalf("Push(%s, %s): %v", at, body, err)
	}
	return res
}

func (s *testStore) del(t testing.TB, at string) store.Result {
	t.Helper()
	res, err := s.Delete(t.Context(), loc(t, at), store.Cond{})
	if err != nil {
		t.Fatalf("Delete(%s): %v", at, err)
	}
	return res
}

func (s *testStore) get(t testing.TB, at string) store.Value {
	t.Helper()
	v, err := s.Get(loc(t, at))
	if err != nil {
		t.Fatalf("Get(%s): %v", at, err)
	}
	return v
}

// jsonEq reports whether two JSON texts are the same value.
func jsonEq(t testing.TB, a, b []byte) bool {
	t.Helper()
	return reflect.DeepEqual(decode(t, a), decode(t, b))
}

// checkJSON fails unless got is compact JSON equal to want.
func checkJSON(t testing.TB, what string, got []byte, want string) {
	t.Helper()
	if !jsonEq(t, got, []byte(want)) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
	if !model.IsCompact(got) {
		t.Errorf("%s = %q, not compact JSON", what, got)
	}
}

func TestPutGetEveryLevel(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	res := s.put(t, "r1", ` { "offer" : {"type":"offer","sdp":"v=0\r\n"},
		"callerCandidates": {"c1": {"candidate":"a", "sdpMid":"0"}, "c2": 7} } `)
	if res.Rev != 1 || res.ETag != 1 || res.Name != "" {
		t.Errorf("room PUT result: Rev %d ETag %d Name %q, want 1 1 \"\"", res.Rev, res.ETag, res.Name)
	}
	checkJSON(t, "room PUT value", res.Value, `{"callerCandidates":{"c1":{"candidate":"a","sdpMid":"0"},"c2":7},"offer":{"type":"offer","sdp":"v=0\r\n"}}`)

	res = s.put(t, "r1/answer", `"sdp-answer"`)
	if res.Rev != 2 || res.ETag != 2 {
		t.Errorf("key PUT: Rev %d ETag %d, want 2 2", res.Rev, res.ETag)
	}
	res = s.put(t, "r1/callerCandidates/c3", `{"candidate":"b"}`)
	if res.Rev != 3 || res.ETag != 3 {
		t.Errorf("child PUT: Rev %d ETag %d, want 3 3", res.Rev, res.ETag)
	}
	checkJSON(t, "child PUT value", res.Value, `{"candidate":"b"}`)

	for _, tc := range []struct {
		at   string
		want string
		rev  uint64
	}{
		{"r1", `{"answer":"sdp-answer","callerCandidates":{"c1":{"candidate":"a","sdpMid":"0"},"c2":7,"c3":{"candidate":"b"}},"offer":{"type":"offer","sdp":"v=0\r\n"}}`, 3},
		{"r1/offer", `{"type":"offer","sdp":"v=0\r\n"}`, 1},
		{"r1/offer/sdp", `"v=0\r\n"`, 1},
		{"r1/answer", `"sdp-answer"`, 2},
		{"r1/answer/x", `null`, 0}, // below a leaf
		{"r1/callerCandidates", `{"c1":{"candidate":"a","sdpMid":"0"},"c2":7,"c3":{"candidate":"b"}}`, 3},
		{"r1/callerCandidates/c1", `{"candidate":"a","sdpMid":"0"}`, 1},
		{"r1/callerCandidates/c3", `{"candidate":"b"}`, 3},
		{"r1/nothing", `null`, 0},
		{"r1/nothing/x", `null`, 0},
		{"r2", `null`, 0},
	} {
		v := s.get(t, tc.at)
		checkJSON(t, "Get "+tc.at, v.Data, tc.want)
		if v.Rev != tc.rev {
			t.Errorf("Get %s: Rev %d, want %d", tc.at, v.Rev, tc.rev)
		}
	}
	if got := s.Stats(); got.Revision != 3 || got.Rooms != 1 {
		t.Errorf("Stats = %+v, want Revision 3, Rooms 1", got)
	}
}

func TestEmptyValuesVanish(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	for _, tc := range []struct {
		at, body  string
		wantValue string // store.Result.Value
		wantRoom  string // Get room afterwards
	}{
		{"r", `{"a":{"x":1,"y":null,"z":{}},"b":null,"c":{},"d":{"x":null}}`, `{"a":{"x":1}}`, `{"a":{"x":1}}`},
		{"r/b", `{}`, `null`, `{"a":{"x":1}}`},
		{"r/b", `{"p":null,"q":{}}`, `null`, `{"a":{"x":1}}`},
		// Below children too, as Firebase does: nulls and empties vanish at every depth.
		{"r/a/y", `{"deep":{"e":{},"k":[null,{"n":null},1,2]},"n":null}`, `{"deep":{"k":[null,null,1,2]}}`, `{"a":{"x":1,"y":{"deep":{"k":[null,null,1,2]}}}}`},
		{"r/a/z", `{"deep":{"e":[]},"n":null}`, `null`, `{"a":{"x":1,"y":{"deep":{"k":[null,null,1,2]}}}}`},
		{"r/a/x", `{}`, `null`, `{"a":{"y":{"deep":{"k":[null,null,1,2]}}}}`},
		{"r/a/y", `null`, `null`, `null`}, // the last child goes, the key and the room with it
	} {
		res := s.put(t, tc.at, tc.body)
		checkJSON(t, "PUT "+tc.at+" "+tc.body+" value", res.Value, tc.wantValue)
		if (res.ETag == 0) != (tc.wantValue == "null") {
			t.Errorf("PUT %s %s: ETag %d, want 0 exactly when nothing is stored", tc.at, tc.body, res.ETag)
		}
		checkJSON(t, "room after PUT "+tc.at+" "+tc.body, s.get(t, "r").Data, tc.wantRoom)
	}
	if got := s.Stats().Rooms; got != 0 {
		t.Errorf("Stats().Rooms = %d after the room emptied, want 0", got)
	}
	if v := s.get(t, "r"); v.Rev != 0 {
		t.Errorf("emptied room: Rev %d, want 0", v.Rev)
	}
}

func TestRoomPutNullOrEmptyDeletes(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`null`, `{}`, ` { "a" : null } `} {
		t.Run(body, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, store.Options{})
			s.put(t, "r", `{"a":1}`)
			res := s.put(t, "r", body)
			if res.ETag != 0 || string(res.Value) != "null" || res.Rev != 2 {
				t.Errorf("PUT r %s: %+v, want Rev 2, ETag 0, null", body, res)
			}
			if v := s.get(t, "r"); string(v.Data) != "null" || v.Rev != 0 {
				t.Errorf("Get r = %s rev %d, want null rev 0", v.Data, v.Rev)
			}
		})
	}
}

func TestDeleteEveryLevel(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	s.put(t, "r", `{"a":{"x":1,"y":2},"b":"leaf"}`)
	for _, tc := range []struct{ at, wantRoom string }{
		{"r/a/x", `{"a":{"y":2},"b":"leaf"}`},
		{"r/a/x", `{"a":{"y":2},"b":"leaf"}`}, // absent already
		{"r/b/x", `{"a":{"y":2},"b":"leaf"}`}, // a child under a leaf: the leaf stays
		{"r/b", `{"a":{"y":2}}`},
		{"r/zz", `{"a":{"y":2}}`},
		{"r", `null`},
		{"r", `null`},
	} {
		before := s.Stats().Revision
		res := s.del(t, tc.at)
		if string(res.Value) != "null" || res.ETag != 0 || res.Rev != before+1 {
			t.Errorf("DELETE %s = %+v, want Value null, ETag 0, Rev %d", tc.at, res, before+1)
		}
		if v := s.get(t, tc.at); string(v.Data) != "null" || v.Rev != 0 {
			t.Errorf("Get %s after DELETE = %s rev %d, want null 0", tc.at, v.Data, v.Rev)
		}
		checkJSON(t, "room after DELETE "+tc.at, s.get(t, "r").Data, tc.wantRoom)
	}
}

func TestChildUnderLeaf(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	s.put(t, "r/k", `42`)
	s.del(t, "r/k/x")
	checkJSON(t, "leaf after deleting a child under it", s.get(t, "r/k").Data, `42`)
	s.patch(t, "r/k", `{"x":null}`)
	checkJSON(t, "leaf after patching a null child", s.get(t, "r/k").Data, `42`)
	s.put(t, "r/k/x", `true`)
	checkJSON(t, "key after writing a child under the leaf", s.get(t, "r/k").Data, `{"x":true}`)
	s.put(t, "r/k", `"s"`)
	if v := s.get(t, "r/k/x"); string(v.Data) != "null" || v.Rev != 0 {
		t.Errorf("child after its key became a leaf = %s rev %d, want null 0", v.Data, v.Rev)
	}
	res := s.push(t, "r/k", `1`)
	checkJSON(t, "key after a push onto the leaf", s.get(t, "r/k").Data, `{"`+res.Name+`":1}`)
}

func TestPush(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	s.put(t, "r/other", `1`)
	res := s.push(t, "r/callerCandidates", ` {"candidate": "c", "n": [1, 2]} `)
	if !validPushID(res.Name) {
		t.Errorf("push id %q is not 20 characters of the push alphabet", res.Name)
	}
	checkJSON(t, "POST value", res.Value, `{"candidate":"c","n":[1,2]}`)
	if res.Rev != 2 || res.ETag != 2 {
		t.Errorf("POST Rev %d ETag %d, want 2 2", res.Rev, res.ETag)
	}
	v := s.get(t, "r/callerCandidates/"+res.Name)
	checkJSON(t, "pushed child", v.Data, `{"candidate":"c","n":[1,2]}`)
	if v.Rev != 2 {
		t.Errorf("pushed child Rev %d, want 2", v.Rev)
	}
	if k := s.get(t, "r/callerCandidates"); k.Rev != res.ETag {
		t.Errorf("key Rev %d, want the POST's ETag %d", k.Rev, res.ETag)
	}
	for _, at := range []string{"r", "r/k/c"} {
		_, err := s.Push(t.Context(), loc(t, at), []byte(`1`), store.Cond{})
		if !errors.Is(err, store.ErrInvalidPath) {
			t.Errorf("Push at %s: err %v, want ErrInvalidPath", at, err)
		}
	}
}

func TestPatch(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	s.put(t, "r", `{"a":{"x":1,"y":2},"b":"leaf","c":3}`)

	res := s.patch(t, "r", `{"a/x": {"n": 1}, "a/z": {}, "b": {"p": null, "q": 5}, "c": null, "d/w": "new"}`)
	if res.Rev != 2 || res.ETag != 2 {
		t.Errorf("room PATCH Rev %d ETag %d, want 2 2", res.Rev, res.ETag)
	}
	checkJSON(t, "room PATCH value", res.Value, `{"a/x":{"n":1},"a/z":null,"b":{"q":5},"c":null,"d/w":"new"}`)
	checkJSON(t, "room after PATCH", s.get(t, "r").Data, `{"a":{"x":{"n":1},"y":2},"b":{"q":5},"d":{"w":"new"}}`)
	if v := s.get(t, "r/a/y"); v.Rev != 1 {
		t.Errorf("untouched child r/a/y Rev %d, want 1", v.Rev)
	}
	if v := s.get(t, "r/a/x"); v.Rev != 2 {
		t.Errorf("patched child r/a/x Rev %d, want 2", v.Rev)
	}

	res = s.patch(t, "r/a", `{"x": null, "y": 3, "q": [true]}`)
	checkJSON(t, "key PATCH value", res.Value, `{"q":[true],"x":null,"y":3}`)
	if res.Rev != 3 || res.ETag != 3 {
		t.Errorf("key PATCH Rev %d ETag %d, want 3 3", res.Rev, res.ETag)
	}
	checkJSON(t, "key after PATCH", s.get(t, "r/a").Data, `{"q":[true],"y":3}`)

	res = s.patch(t, "r/a", `{"q": null, "y": null}`)
	if res.ETag != 0 {
		t.Errorf("PATCH emptying the key: ETag %d, want 0", res.ETag)
	}
	checkJSON(t, "room after emptying a", s.get(t, "r").Data, `{"b":{"q":5},"d":{"w":"new"}}`)

	res = s.patch(t, "r", `{"b": null, "d/w": null}`)
	if res.ETag != 0 || res.Rev != 5 {
		t.Errorf("PATCH emptying the room: %+v, want Rev 5 ETag 0", res)
	}
	if v := s.get(t, "r"); string(v.Data) != "null" || v.Rev != 0 {
		t.Errorf("room after emptying PATCH = %s rev %d, want null 0", v.Data, v.Rev)
	}
}

// TestInvalidWritesChangeNothing: every rejected write returns its sentinel,
// takes no revision and leaves every value as it was.
func TestInvalidWritesChangeNothing(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	s.put(t, "r", `{"a":{"x":1},"b":"leaf"}`)
	long := strings.Repeat("k", 65)
	at := func(s string) store.Path { return loc(t, s) }
	tests := []struct {
		name string
		op   string // put, delete, push or patch
		at   store.Path
		body string
		want error
	}{
		{"bad JSON", "put", at("r/a"), `{"x":`, store.ErrInvalidValue},
		{"empty body", "put", at("r/a"), ``, store.ErrInvalidValue},
		{"trailing data after a value", "put", at("r/a/x"), `1 2`, store.ErrInvalidValue},
		{"trailing data after an object", "put", at("r/a"), `{"x":1}{}`, store.ErrInvalidValue},
		{"trailing data after a room", "put", at("r"), `{} x`, store.ErrInvalidValue},
		{"invalid UTF-8", "put", at("r/a/x"), "\"\xff\xfe\"", store.ErrInvalidValue},
		{"invalid UTF-8 in a member name", "put", at("r/a"), "{\"\xc3\":1}", store.ErrInvalidValue},
		{"room PUT of a number", "put", at("r"), `5`, store.ErrInvalidValue},
		{"room PUT of a string", "put", at("r"), `"x"`, store.ErrInvalidValue},
		{"room PUT of an array", "put", at("r"), `[{"a":1}]`, store.ErrInvalidValue},
		{"invalid key name in a room", "put", at("r"), `{"a b":1}`, store.ErrInvalidValue},
		{"empty key name in a room", "put", at("r"), `{"":1}`, store.ErrInvalidValue},
		{"key name of 65 characters", "put", at("r"), `{"` + long + `":1}`, store.ErrInvalidValue},
		{"NUL in an escaped key name", "put", at("r"), `{"a\u0000b":1}`, store.ErrInvalidValue},
		{"invalid child name in a key", "put", at("r/a"), `{"x/y":1}`, store.ErrInvalidValue},
		{"invalid child name in a room", "put", at("r"), `{"a":{"x.y":1}}`, store.ErrInvalidValue},
		{"PATCH of an array", "patch", at("r"), `[1]`, store.ErrInvalidValue},
		{"PATCH of null", "patch", at("r/a"), `null`, store.ErrInvalidValue},
		{"PATCH member too deep", "patch", at("r"), `{"a/x/y":1}`, store.ErrInvalidPath},
		{"PATCH member with a leading slash", "patch", at("r"), `{"/a":1}`, store.ErrInvalidPath},
		{"PATCH member with a trailing slash", "patch", at("r"), `{"a/":1}`, store.ErrInvalidPath},
		{"PATCH member empty", "patch", at("r"), `{"":1}`, store.ErrInvalidPath},
		{"PATCH member with a space", "patch", at("r"), `{"a b":1}`, store.ErrInvalidPath},
		{"PATCH of a key with a nested member", "patch", at("r/a"), `{"x/y":1}`, store.ErrInvalidPath},
		{"PATCH members overlap", "patch", at("r"), `{"a":{"x":2},"a/x":3}`, store.ErrInvalidPath},
		{"PATCH members overlap, deleting", "patch", at("r"), `{"a/y":null,"a":null}`, store.ErrInvalidPath},
		{"PATCH with an invalid child name in a value", "patch", at("r"), `{"a":{"x y":1}}`, store.ErrInvalidValue},
		{"PATCH of a child", "patch", at("r/a/x"), `{"p":1}`, store.ErrInvalidPath},
		{"POST to a room", "push", at("r"), `1`, store.ErrInvalidPath},
		{"POST to a child", "push", at("r/a/x"), `1`, store.ErrInvalidPath},
		{"POST of bad JSON", "push", at("r/a"), `{`, store.ErrInvalidValue},
		// Path's fields are exported: the store checks names it did not make.
		{"a Path with a NUL in its room", "put", store.Path{Room: "r\x00a"}, `{"a":1}`, store.ErrInvalidPath},
		{"a Path with a child but no key", "put", store.Path{Room: "r", Child: "x"}, `1`, store.ErrInvalidPath},
		{"a Path with a slash in its key", "patch", store.Path{Room: "r", Key: "a/x"}, `{"y":1}`, store.ErrInvalidPath},
		{"a zero Path", "delete", store.Path{}, ``, store.ErrInvalidPath},
	}
	for _, tc := range tests {
		before, room := s.Stats().Revision, s.get(t, "r")
		var res store.Result
		var err error
		switch tc.op {
		case "put":
			res, err = s.Put(t.Context(), tc.at, []byte(tc.body), store.Cond{})
		case "delete":
			res, err = s.Delete(t.Context(), tc.at, store.Cond{})
		case "push":
			res, err = s.Push(t.Context(), tc.at, []byte(tc.body), store.Cond{})
		case "patch":
			res, err = s.Patch(t.Context(), tc.at, []byte(tc.body), store.Cond{})
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		for _, other := range []error{store.ErrInvalidValue, store.ErrInvalidPath, store.ErrConditionFailed, store.ErrValueTooLarge} {
			if other != tc.want && errors.Is(err, other) {
				t.Errorf("%s: err %v also matches %v", tc.name, err, other)
			}
		}
		if res.Rev != 0 {
			t.Errorf("%s: Result.Rev %d, want 0", tc.name, res.Rev)
		}
		if after := s.Stats().Revision; after != before {
			t.Errorf("%s: revision %d -> %d, want unchanged", tc.name, before, after)
		}
		if now := s.get(t, "r"); !bytes.Equal(now.Data, room.Data) || now.Rev != room.Rev {
			t.Errorf("%s: room %s rev %d -> %s rev %d, want unchanged", tc.name, room.Data, room.Rev, now.Data, now.Rev)
		}
	}
	for _, p := range []store.Path{{Room: "r\x00a"}, {Room: "r", Child: "x"}} {
		if _, err := s.Get(p); !errors.Is(err, store.ErrInvalidPath) {
			t.Errorf("Get(%q): %v, want ErrInvalidPath", p, err)
		}
		if _, err := s.Watch(p, 0, false); !errors.Is(err, store.ErrInvalidPath) {
			t.Errorf("Watch(%q): %v, want ErrInvalidPath", p, err)
		}
	}
	// Below the child level JSON is free-form: names there are not checked.
	res := s.push(t, "r/a", `{"ok":{"bad name":1}}`)
	checkJSON(t, "free-form grandchild", s.get(t, "r/a/"+res.Name).Data, `{"ok":{"bad name":1}}`)
}

func TestNewPath(t *testing.T) {
	t.Parallel()
	room128, key64 := strings.Repeat("R", 128), strings.Repeat("k", 64)
	for _, tc := range []struct {
		room, key, child string
		ok               bool
	}{
		{"r1", "", "", true},
		{"r1", "offer", "", true},
		{"r1", "callerCandidates", "-OCx3kT1AAAAAAAAAAAA", true},
		{room128, key64, key64, true},
		{"A-z_09", "A-z_09", "A-z_09", true},
		{"", "", "", false},
		{room128 + "R", "", "", false},
		{"r1", key64 + "k", "", false},
		{"r1", "k", key64 + "k", false},
		{"r1", "", "child", false}, // a child needs a key
		{"r/1", "", "", false},
		{"r1", "a/b", "", false},   // deeper paths are not names
		{"r1", "a", "b/c", false},  // deeper paths are not names
		{"r1.json", "", "", false}, // .json is the router's business
		{"r 1", "", "", false},
		{"r\x001", "", "", false},
		{"rööm", "", "", false},
		{"r1", "k", ".", false},
		{"r1", "..", "", false},
	} {
		p, err := store.NewPath(tc.room, tc.key, tc.child)
		if tc.ok {
			if err != nil {
				t.Errorf("NewPath(%q, %q, %q): %v, want ok", tc.room, tc.key, tc.child, err)
				continue
			}
			if p != (store.Path{Room: tc.room, Key: tc.key, Child: tc.child}) {
				t.Errorf("NewPath(%q, %q, %q) = %+v", tc.room, tc.key, tc.child, p)
			}
			want := "/rooms/" + strings.TrimRight(tc.room+"/"+tc.key+"/"+tc.child, "/")
			if p.String() != want {
				t.Errorf("String() = %q, want %q", p.String(), want)
			}
		} else if !errors.Is(err, store.ErrInvalidPath) || p != (store.Path{}) {
			t.Errorf("NewPath(%q, %q, %q) = %+v, %v; want ErrInvalidPath", tc.room[:min(len(tc.room), 20)], tc.key, tc.child, p, err)
		}
	}
}

func TestConditionalWrites(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	ctx := t.Context()
	s.put(t, "r", `{"offer":"o1","answer":"a1"}`) // rev 1
	s.put(t, "r/answer", `"a2"`)                  // rev 2

	offer, answer, room := loc(t, "r/offer"), loc(t, "r/answer"), loc(t, "r")
	wantCondErr := func(what string, err error, value string, rev uint64) {
		t.Helper()
		var ce *store.ConditionError
		if !errors.As(err, &ce) || !errors.Is(err, store.ErrConditionFailed) {
			t.Fatalf("%s: err %v, want a *ConditionError", what, err)
		}
		checkJSON(t, what+": ConditionError.Value", ce.Value, value)
		if ce.Rev != rev {
			t.Errorf("%s: ConditionError.Rev %d, want %d", what, ce.Rev, rev)
		}
	}
	unchanged := func(what string, rev uint64) {
		t.Helper()
		if got := s.Stats().Revision; got != rev {
			t.Errorf("%s: revision %d, want %d (nothing committed)", what, got, rev)
		}
	}

	// The offer's ETag is 1: a write of the answer does not move it.
	if _, err := s.Put(ctx, offer, []byte(`"o2"`), store.Cond{Set: true, Rev: 2}); err == nil {
		t.Fatal("PUT offer If-Match 2 succeeded, want a mismatch (offer is at 1)")
	} else {
		wantCondErr("PUT offer If-Match 2", err, `"o1"`, 1)
	}
	unchanged("failed PUT", 2)
	res, err := s.Put(ctx, offer, []byte(`"o2"`), store.Cond{Set: true, Rev: 1})
	if err != nil || res.Rev != 3 || res.ETag != 3 {
		t.Fatalf("PUT offer If-Match 1: %+v, %v; want Rev 3", res, err)
	}

	// The room's ETag is its last change anywhere below it.
	_, err = s.Delete(ctx, room, store.Cond{Set: true, Rev: 2})
	wantCondErr("DELETE room If-Match 2", err, `{"answer":"a2","offer":"o2"}`, 3)
	unchanged("failed DELETE", 3)

	// null_etag: only where nothing is stored.
	_, err = s.Put(ctx, answer, []byte(`"a3"`), store.Cond{Set: true})
	wantCondErr("PUT answer If-Match null_etag", err, `"a2"`, 2)
	res, err = s.Put(ctx, loc(t, "r/callee"), []byte(`"c"`), store.Cond{Set: true})
	if err != nil || res.ETag != 4 {
		t.Fatalf("PUT absent key If-Match null_etag: %+v, %v", res, err)
	}
	_, err = s.Put(ctx, loc(t, "r2"), []byte(`{"a":1}`), store.Cond{Set: true, Rev: 1})
	wantCondErr("PUT absent room If-Match 1", err, `null`, 0)
	_, err = s.Put(ctx, loc(t, "r/offer/x"), []byte(`1`), store.Cond{Set: true, Rev: 3})
	wantCondErr("PUT child under a leaf If-Match 3", err, `null`, 0)
	unchanged("failed null_etag writes", 4)

	// PATCH and POST compare with their own location.
	_, err = s.Patch(ctx, room, []byte(`{"answer":"a3"}`), store.Cond{Set: true, Rev: 3})
	wantCondErr("PATCH room If-Match 3", err, `{"answer":"a2","callee":"c","offer":"o2"}`, 4)
	if res, err = s.Patch(ctx, room, []byte(`{"answer":"a3"}`), store.Cond{Set: true, Rev: 4}); err != nil || res.Rev != 5 {
		t.Fatalf("PATCH room If-Match 4: %+v, %v", res, err)
	}
	cand := loc(t, "r/cands")
	if res, err = s.Push(ctx, cand, []byte(`"c1"`), store.Cond{Set: true}); err != nil || res.ETag != 6 {
		t.Fatalf("POST If-Match null_etag to an absent key: %+v, %v", res, err)
	}
	_, err = s.Push(ctx, cand, []byte(`"c2"`), store.Cond{Set: true})
	wantCondErr("POST If-Match null_etag to a present key", err, `{"`+res.Name+`":"c1"}`, 6)
	if res, err = s.Push(ctx, cand, []byte(`"c2"`), store.Cond{Set: true, Rev: 6}); err != nil || res.Rev != 7 {
		t.Fatalf("POST If-Match 6: %+v, %v", res, err)
	}
	// Deleting with the right ETag, then null_etag holds.
	if res, err = s.Delete(ctx, room, store.Cond{Set: true, Rev: 7}); err != nil || res.ETag != 0 {
		t.Fatalf("DELETE room If-Match 7: %+v, %v", res, err)
	}
	if _, err = s.Put(ctx, room, []byte(`{"offer":"o3"}`), store.Cond{Set: true}); err != nil {
		t.Fatalf("PUT deleted room If-Match null_etag: %v", err)
	}
}

// TestConditionFailureIsPerWrite: in one commit group, a failed precondition
// or quota fails only its own write.
func TestConditionFailureIsPerWrite(t *testing.T) {
	t.Parallel()
	var maxGroup atomic.Int64 // the largest commit group
	s := openStore(t, store.Options{Limits: store.Limits{MaxKeys: 4}, OnCommit: func(ops int, _ time.Duration, err error) {
		if int64(ops) > maxGroup.Load() {
			maxGroup.Store(int64(ops))
		}
	}})
	s.put(t, "r/k", `0`)
	// Hold bbolt's write lock while the writes queue up, so they commit in
	// groups however the scheduler runs them.
	b := s.eng
	held, release := make(chan struct{}), make(chan struct{})
	go b.db.Update(func(*bbolt.Tx) error { close(held); <-release; return nil })
	<-held
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	go func() {
		for deadline := time.Now().Add(5 * time.Second); len(b.ops) < 16 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		}
		close(release)
	}()
	for i := range n {
		wg.Go(func() {
			var err error
			switch i % 4 {
			case 0: // stale precondition
				_, err = s.Put(t.Context(), loc(t, "r/k"), []byte(`1`), store.Cond{Set: true, Rev: 1 << 40})
			case 1: // over MaxKeys: r has k, q, and these would add more
				_, err = s.Put(t.Context(), loc(t, "r"), []byte(`{"a":1,"b":2,"c":3,"d":4,"e":5}`), store.Cond{})
			default:
				_, err = s.Put(t.Context(), mustPath(t, fmt.Sprintf("ok%d", i), "v", ""), []byte(`1`), store.Cond{})
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		var want error
		switch i % 4 {
		case 0:
			want = store.ErrConditionFailed
		case 1:
			want = store.ErrTooManyKeys
		}
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("write %d: err %v, want %v", i, err, want)
		}
	}
	if got, want := s.Stats().Revision, uint64(1+n/2); got != want {
		t.Errorf("revision %d, want %d: one per successful write", got, want)
	}
	// Half the writes fail: in a group this large, failing and succeeding
	// writes shared a commit. OnCommit runs after the callers got their
	// results: wait for it.
	s.waitPublished(t, s.Stats().Revision)
	if g := maxGroup.Load(); g < 8 {
		t.Errorf("largest commit group %d writes: the test did not exercise groups", g)
	}
	if got, want := s.Stats().Rooms, int64(1+n/2); got != want {
		t.Errorf("Stats().Rooms = %d, want %d", got, want)
	}
}

func TestPushIDsOrdered(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{Limits: store.Limits{MaxChildren: 1000}})
	const n, workers, keys = 10000, 16, 20
	type pushed struct {
		rev  uint64
		name string
	}
	results := make([][]pushed, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				res, err := s.Push(t.Context(), mustPath(t, "r", fmt.Sprintf("k%d", i%keys), ""), []byte(`1`), store.Cond{})
				if err != nil {
					t.Errorf("push %d: %v", i, err)
					return
				}
				results[w] = append(results[w], pushed{res.Rev, res.Name})
			}
		})
	}
	wg.Wait()
	all := slices.Concat(results...)
	if len(all) != n {
		t.Fatalf("%d pushes acknowledged, want %d", len(all), n)
	}
	slices.SortFunc(all, func(a, b pushed) int { return int(a.rev) - int(b.rev) })
	for i, p := range all {
		if !validPushID(p.name) {
			t.Fatalf("push id %q is not 20 characters of the push alphabet", p.name)
		}
		if i > 0 && p.name <= all[i-1].name {
			t.Fatalf("push id %q (rev %d) not after %q (rev %d)", p.name, p.rev, all[i-1].name, all[i-1].rev)
		}
	}
	// The time part is the creation time in milliseconds.
	ms := decodePushTime(all[0].name)
	if now := time.Now().UnixMilli(); ms > now || now-ms > 60_000 {
		t.Errorf("push id %q encodes %d ms, now is %d", all[0].name, ms, now)
	}
}

func TestQuotas(t *testing.T) {
	t.Parallel()
	sentinels := []error{store.ErrValueTooLarge, store.ErrTooManyKeys, store.ErrTooManyChildren, store.ErrRoomTooLarge, store.ErrDatabaseFull, store.ErrInvalidValue, store.ErrConditionFailed}
	for _, tc := range []struct {
		name   string
		limits store.Limits
		setup  []string // "key=value" PUTs in room r
		at     string
		op     string // put, push, patch
		body   string
		want   error
		ok     string // a write that still succeeds (at=body), "" for none
	}{
		{"value size", store.Limits{MaxValueBytes: 20}, nil, "r/k", "put", `"` + strings.Repeat("x", 19) + `"`, store.ErrValueTooLarge, "r/k=" + `"` + strings.Repeat("x", 18) + `"`},
		{"value size of a POST", store.Limits{MaxValueBytes: 20}, nil, "r/k", "push", `"` + strings.Repeat("x", 19) + `"`, store.ErrValueTooLarge, ""},
		{"value size of a PATCH", store.Limits{MaxValueBytes: 20}, nil, "r", "patch", `{"k":"` + strings.Repeat("x", 20) + `"}`, store.ErrValueTooLarge, ""},
		{"keys by PUT", store.Limits{MaxKeys: 2}, []string{"a=1", "b=2"}, "r/c", "put", `3`, store.ErrTooManyKeys, "r/b=5"},
		{"keys by room PUT", store.Limits{MaxKeys: 2}, nil, "r", "put", `{"a":1,"b":2,"c":3}`, store.ErrTooManyKeys, `r={"a":1,"b":2}`},
		{"keys by PATCH", store.Limits{MaxKeys: 2}, []string{"a=1"}, "r", "patch", `{"b":1,"c/x":2}`, store.ErrTooManyKeys, ""},
		{"keys by POST", store.Limits{MaxKeys: 1}, []string{"a=1"}, "r/b", "push", `1`, store.ErrTooManyKeys, ""},
		{"children by POST", store.Limits{MaxChildren: 2}, []string{`a={"x":1,"y":2}`}, "r/a", "push", `3`, store.ErrTooManyChildren, "r/a/x=7"},
		{"children by PUT", store.Limits{MaxChildren: 2}, nil, "r/a", "put", `{"x":1,"y":2,"z":3}`, store.ErrTooManyChildren, ""},
		{"children by PATCH", store.Limits{MaxChildren: 2}, []string{`a={"x":1}`}, "r/a", "patch", `{"y":1,"z":2}`, store.ErrTooManyChildren, ""},
		{"room bytes", store.Limits{MaxRoomBytes: 300}, []string{`a="` + strings.Repeat("x", 200) + `"`}, "r/b", "put", `"` + strings.Repeat("y", 100) + `"`, store.ErrRoomTooLarge, `r/b="small"`},
		{"room bytes by many small records", store.Limits{MaxRoomBytes: 32 * 10}, nil, "r", "put", `{"a":{"b":1,"c":2,"d":3,"e":4,"f":5,"g":6,"h":7,"i":8,"j":9,"k":10}}`, store.ErrRoomTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, store.Options{Limits: tc.limits})
			for _, kv := range tc.setup {
				k, v, _ := strings.Cut(kv, "=")
				s.put(t, "r/"+k, v)
			}
			before, room := s.Stats().Revision, s.get(t, "r")
			var err error
			switch tc.op {
			case "put":
				_, err = s.Put(t.Context(), loc(t, tc.at), []byte(tc.body), store.Cond{})
			case "push":
				_, err = s.Push(t.Context(), loc(t, tc.at), []byte(tc.body), store.Cond{})
			case "patch":
				_, err = s.Patch(t.Context(), loc(t, tc.at), []byte(tc.body), store.Cond{})
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s %s %s: err %v, want %v", tc.op, tc.at, tc.body, err, tc.want)
			}
			for _, other := range sentinels {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err %v also matches %v", err, other)
				}
			}
			if after := s.Stats().Revision; after != before {
				t.Errorf("revision %d -> %d, want unchanged", before, after)
			}
			if now := s.get(t, "r"); !bytes.Equal(now.Data, room.Data) || now.Rev != room.Rev {
				t.Errorf("room %s rev %d -> %s rev %d, want unchanged", room.Data, room.Rev, now.Data, now.Rev)
			}
			if tc.ok != "" {
				at, body, _ := strings.Cut(tc.ok, "=")
				s.put(t, at, body)
			}
		})
	}
}

// TestQuotasRefuseGrowthOnly: a room over a lowered limit can still shrink.
func TestQuotasRefuseGrowthOnly(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sigbase.db")
	s := openPath(t, path, store.Options{})
	s.put(t, "r", `{"a":{"x":1,"y":2,"z":3},"b":1,"c":2}`)
	s.Close()
	s = openPath(t, path, store.Options{Limits: store.Limits{MaxKeys: 1, MaxChildren: 1}})
	if _, err := s.Put(t.Context(), loc(t, "r/d"), []byte(`1`), store.Cond{}); !errors.Is(err, store.ErrTooManyKeys) {
		t.Errorf("adding a key over the lowered limit: %v, want ErrTooManyKeys", err)
	}
	if _, err := s.Push(t.Context(), loc(t, "r/a"), []byte(`1`), store.Cond{}); !errors.Is(err, store.ErrTooManyChildren) {
		t.Errorf("adding a child over the lowered limit: %v, want ErrTooManyChildren", err)
	}
	s.del(t, "r/b")
	s.del(t, "r/a/x")
	s.put(t, "r/c", `"replaced"`) // same key count
	checkJSON(t, "room", s.get(t, "r").Data, `{"a":{"y":2,"z":3},"c":"replaced"}`)
}

func TestDatabaseFull(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{MaxSize: 1 << 20})
	big := `"` + strings.Repeat("x", 60<<10) + `"`
	var full error
	var written []string
	for i := 0; i < 100 && full == nil; i++ {
		at := fmt.Sprintf("r%d/k", i)
		_, err := s.Put(t.Context(), loc(t, at), []byte(big), store.Cond{})
		switch {
		case err == nil:
			written = append(written, at)
		case errors.Is(err, store.ErrDatabaseFull):
			full = err
		default:
			t.Fatalf("PUT %s: %v, want nil or ErrDatabaseFull", at, err)
		}
	}
	if full == nil {
		t.Fatalf("100 writes of 60 KiB with MaxSize 1 MiB: none failed with ErrDatabaseFull")
	}
	if len(written) == 0 {
		t.Fatalf("the first write already failed: %v", full)
	}
	rev := s.Stats().Revision
	if _, err := s.Put(t.Context(), loc(t, "late/k"), []byte(big), store.Cond{}); !errors.Is(err, store.ErrDatabaseFull) {
		t.Errorf("next big write: %v, want ErrDatabaseFull", err)
	}
	if got := s.Stats().Revision; got != rev {
		t.Errorf("revision %d after failed writes, want %d", got, rev)
	}
	for _, at := range written {
		if v := s.get(t, at); !jsonEq(t, v.Data, []byte(big)) || v.Rev == 0 {
			t.Errorf("Get %s after the database filled: %d bytes rev %d", at, len(v.Data), v.Rev)
		}
	}
	if v := s.get(t, "late/k"); string(v.Data) != "null" {
		t.Errorf("failed write is visible: %.40s", v.Data)
	}
	wa, err := s.Watch(loc(t, written[0]), 0, false) // watchers still work
	if err != nil {
		t.Fatalf("Watch on a full database: %v", err)
	}
	defer wa.Close()
	evs := waitEvents(t, wa, 1)
	if !jsonEq(t, evs[0].Data, []byte(big)) || evs[0].Rev != rev {
		t.Errorf("snapshot on a full database: rev %d, want %d", evs[0].Rev, rev)
	}
}

func TestReopenKeepsValuesAndRevisions(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sigbase.db")
	s := openPath(t, path, store.Options{})
	s.put(t, "r1", `{"offer":{"sdp":"o"},"c":{"x":1}}`)
	s.push(t, "r1/c", `{"candidate":"a"}`)
	s.patch(t, "r2", `{"a":1,"b/x":2}`)
	s.put(t, "r3/k", `1`)
	s.del(t, "r3") // rev 5: r3 is gone
	want := map[string]store.Value{}
	for _, at := range []string{"r1", "r1/offer", "r1/c", "r2", "r2/b/x", "r3"} {
		want[at] = s.get(t, at)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = openPath(t, path, store.Options{})
	if st := s.Stats(); st.Revision != 5 || st.Rooms != 2 {
		t.Errorf("after reopen Stats = %+v, want Revision 5, Rooms 2", st)
	}
	for at, w := range want {
		if got := s.get(t, at); !bytes.Equal(got.Data, w.Data) || got.Rev != w.Rev {
			t.Errorf("after reopen Get %s = %s rev %d, want %s rev %d", at, got.Data, got.Rev, w.Data, w.Rev)
		}
	}
	if res := s.put(t, "r1/answer", `"a"`); res.Rev != 6 {
		t.Errorf("first write after reopen: Rev %d, want 6 (no gap, no reuse)", res.Rev)
	}
	// The change log survives too: resume after rev 1 replays r1's later changes.
	w, err := s.Watch(loc(t, "r1"), 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	evs := waitEvents(t, w, 2)
	if !w.Replayed() || evs[0].Rev != 2 || evs[1].Rev != 6 {
		t.Errorf("resume after reopen: replayed %v, events %v, want revs 2 and 6", w.Replayed(), evs)
	}
}

func TestOpenLocked(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	start := time.Now()
	second, err := Open(s.path, store.Options{OpenTimeout: 200 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		second.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), s.path) {
		t.Errorf("error %q does not name the file", err)
	}
	if elapsed < 150*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("second Open failed after %v, want about the 200ms OpenTimeout", elapsed)
	}
	// The first store is unharmed.
	s.put(t, "r/k", `1`)
}

func TestLogTrimming(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		limits         store.Limits
		floorLo, floor uint64 // the lowest revision that still replays
	}{
		// Room r is created at 2 and written 20 times (2..21); 5 entries stay.
		{"entries", store.Limits{MaxLogEntries: 5}, 16, 16},
		// Each entry below is about 40 bytes: about 5 stay.
		{"bytes", store.Limits{MaxLogBytes: 5 * 40}, 14, 18},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, store.Options{Limits: tc.limits})
			s.put(t, "other/k", `0`) // rev 1
			for i := range 20 {      // revs 2..21 in room r
				s.put(t, "r/k", fmt.Sprintf(`"%030d"`, i))
			}
			// Find the trim point: the lowest k that still replays.
			floor := uint64(0)
			for k := uint64(0); k <= 21; k++ {
				w, err := s.Watch(loc(t, "r"), k, true)
				if err != nil {
					t.Fatal(err)
				}
				evs := drain(t, w)
				if w.Replayed() {
					if floor == 0 {
						floor = k
					}
				} else if floor != 0 {
					t.Errorf("resume after %d gave a snapshot though %d replayed", k, floor)
				} else if len(evs) != 1 || evs[0].Path != "/" || evs[0].Rev != 21 {
					t.Errorf("resume after %d: %v, want one snapshot at 21", k, evs)
				}
				w.Close()
			}
			if floor < tc.floorLo || floor > tc.floor {
				t.Fatalf("resume replays from after %d, want the log trimmed to its last 5 entries (after %d..%d)", floor, tc.floorLo, tc.floor)
			}
			// Resume from the floor replays every later change, none twice.
			w, err := s.Watch(loc(t, "r"), floor, true)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			evs := drain(t, w)
			if len(evs) != int(21-floor) {
				t.Fatalf("resume after %d: %d events, want %d", floor, len(evs), 21-floor)
			}
			for i, ev := range evs {
				if ev.Rev != floor+1+uint64(i) || ev.Path != "/k" {
					t.Errorf("event %d: %+v, want put /k at %d", i, ev, floor+1+uint64(i))
				}
			}
			checkJSON(t, "last replayed value", evs[len(evs)-1].Data, fmt.Sprintf(`"%030d"`, 19))
		})
	}
}

// A stalled disk (here: another write transaction holding bbolt's lock)
// fills the writer's bounded queue; writes beyond it fail with ErrBusy after
// a short wait instead of piling up, and the queued ones commit later.
func TestFullWriteQueueAnswersBusy(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{WriteQueue: 2})
	b := s.eng
	b.queueWait = 100 * time.Millisecond
	held, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	unstall := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unstall) // before the store's Close, which would wait on the stall
	go b.db.Update(func(*bbolt.Tx) error { close(held); <-release; return nil })
	<-held
	errs := make(chan error, 16)
	put := func(i int) {
		go func() {
			_, err := s.Put(context.Background(), store.Path{Room: "r", Key: fmt.Sprintf("k%d", i)}, []byte("1"), store.Cond{})
			errs <- err
		}()
	}
	waitQueued := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(b.ops) != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d writes queued, want %d", len(b.ops), n)
			}
		}
	}
	put(0)
	waitQueued(0)                     // the writer took it, and waits on bbolt's lock
	time.Sleep(20 * time.Millisecond) // (from its gathering into the commit)
	put(1)
	put(2)
	waitQueued(2) // the queue is full
	const refused = 4
	for i := range refused {
		put(3 + i)
	}
	for range refused {
		select {
		case err := <-errs:
			if !errors.Is(err, store.ErrBusy) {
				t.Fatalf("a write beyond the full queue: %v, want ErrBusy", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a write beyond the full queue waited more than 5 s")
		}
	}
	unstall()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("a queued write after the stall: %v", err)
		}
	}
	if got := s.Stats().Revision; got != 3 {
		t.Fatalf("revision %d after 3 committed writes", got)
	}
}
