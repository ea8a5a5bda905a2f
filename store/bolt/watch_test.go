package bolt

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/internal/model"
	"github.com/sigbase/sigbase/store/storetest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitEvents reads until at least n events arrived.
func waitEvents(t testing.TB, w *store.Watcher, n int) []store.Event {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	var out []store.Event
	for len(out) < n {
		select {
		case <-w.Ready():
			evs, err := w.Next()
			if err != nil {
				t.Fatalf("Next after %d events: %v", len(out), err)
			}
			out = append(out, evs...)
		case <-deadline.C:
			t.Fatalf("%d events after 10s, want %d: %v", len(out), n, out)
		}
	}
	return out
}

// waitErr calls Next until it fails.
func waitErr(t testing.TB, w *store.Watcher) error {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case <-w.Ready():
			if _, err := w.Next(); err != nil {
				return err
			}
		case <-deadline.C:
			t.Fatalf("Next did not fail within 10s")
		}
	}
}

func (s *testStore) watch(t testing.TB, at string, after uint64, resume bool) *store.Watcher {
	t.Helper()
	w, err := s.Watch(loc(t, at), after, resume)
	if err != nil {
		t.Fatalf("Watch(%s, %d, %v): %v", at, after, resume, err)
	}
	t.Cleanup(w.Close)
	return w
}

// checkEvents compares events with the expected ones, each written
// "put /path data" or "patch /path data", all at revision rev.
func checkEvents(t testing.TB, what string, got []store.Event, rev uint64, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: events %v, want %v", what, got, want)
		return
	}
	for i, ev := range got {
		fields := strings.SplitN(want[i], " ", 3)
		if ev.Rev != rev || ev.Patch != (fields[0] == "patch") || ev.Path != fields[1] || !jsonEq(t, ev.Data, []byte(fields[2])) || !model.IsCompact(ev.Data) {
			t.Errorf("%s: event %d is %v, want %d:%s", what, i, ev, rev, want[i])
		}
	}
}

func TestWatchSnapshotFirst(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	s.put(t, "r", `{"a":{"x":1},"b":"leaf"}`)
	s.put(t, "other/k", `1`)
	for _, tc := range []struct{ at, want string }{
		{"r", `{"a":{"x":1},"b":"leaf"}`},
		{"r/a", `{"x":1}`},
		{"r/a/x", `1`},
		{"r/b/x", `null`},
		{"r/zz", `null`},
		{"nothing", `null`},
	} {
		w := s.watch(t, tc.at, 0, false)
		evs := drain(t, w)
		if w.Replayed() {
			t.Errorf("watch %s: Replayed() true for a new watch", tc.at)
		}
		checkEvents(t, "snapshot of "+tc.at, evs, 2, "put / "+tc.want)
	}
	w := s.watch(t, "r", 0, false)
	drain(t, w)
	res := s.put(t, "r/a/x", `2`)
	checkEvents(t, "after the snapshot", waitEvents(t, w, 1), res.Rev, "put /a/x 2")
}

// TestWatchEventProjection: what watchers at every level of a room see of
// each kind of write (shared/API.md "Watching").
func TestWatchEventProjection(t *testing.T) {
	t.Parallel()
	const setup = `{"a":{"x":1,"y":1},"b":"leaf"}`
	watched := []string{"r", "r/a", "r/a/x", "r/a/y", "r/b", "r/b/x", "r/c"}
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, s *testStore) store.Result
		want  map[string][]string // watched location → events; absent: none
	}{
		{"PUT child", func(t *testing.T, s *testStore) store.Result { return s.put(t, "r/a/x", `2`) }, map[string][]string{
			"r": {"put /a/x 2"}, "r/a": {"put /x 2"}, "r/a/x": {"put / 2"}}},
		{"PUT key: only changed children", func(t *testing.T, s *testStore) store.Result { return s.put(t, "r/a", `{"x":1,"y":2,"z":3}`) }, map[string][]string{
			"r": {`put /a {"x":1,"y":2,"z":3}`}, "r/a": {`put / {"x":1,"y":2,"z":3}`}, "r/a/y": {"put / 2"}}},
		{"PUT key unchanged", func(t *testing.T, s *testStore) store.Result { return s.put(t, "r/a", `{"y":1,"x":1}`) }, map[string][]string{
			"r": {`put /a {"x":1,"y":1}`}, "r/a": {`put / {"x":1,"y":1}`}}},
		{"PUT room: only changed keys", func(t *testing.T, s *testStore) store.Result {
			return s.put(t, "r", `{"a":{"x":1,"y":1},"b":"leaf2","c":{"x":0}}`)
		}, map[string][]string{
			"r": {`put / {"a":{"x":1,"y":1},"b":"leaf2","c":{"x":0}}`}, "r/b": {`put / "leaf2"`}, "r/c": {`put / {"x":0}`}}},
		{"PATCH room with key/child members", func(t *testing.T, s *testStore) store.Result {
			return s.patch(t, "r", `{"a/x":5,"b":null,"c/z":{}, "c/w":1}`)
		}, map[string][]string{
			"r": {`patch / {"a/x":5,"b":null,"c/w":1,"c/z":null}`}, "r/a": {`put / {"x":5,"y":1}`}, "r/a/x": {"put / 5"},
			"r/b": {"put / null"}, "r/c": {`put / {"w":1}`}}},
		{"PATCH room replacing a key", func(t *testing.T, s *testStore) store.Result { return s.patch(t, "r", `{"a":{"x":1},"b/x":7}`) }, map[string][]string{
			"r": {`patch / {"a":{"x":1},"b/x":7}`}, "r/a": {`put / {"x":1}`}, "r/a/y": {"put / null"},
			"r/b": {`put / {"x":7}`}, "r/b/x": {"put / 7"}}},
		{"PATCH key", func(t *testing.T, s *testStore) store.Result { return s.patch(t, "r/a", `{"x":null,"z":2}`) }, map[string][]string{
			"r": {`patch /a {"x":null,"z":2}`}, "r/a": {`patch / {"x":null,"z":2}`}, "r/a/x": {"put / null"}}},
		{"POST", nil, nil}, // below: the name is known after the write
		{"DELETE room", func(t *testing.T, s *testStore) store.Result { return s.del(t, "r") }, map[string][]string{
			"r": {"put / null"}, "r/a": {"put / null"}, "r/a/x": {"put / null"}, "r/a/y": {"put / null"},
			"r/b": {"put / null"}, "r/b/x": {"put / null"}, "r/c": {"put / null"}}},
		{"PUT room null", func(t *testing.T, s *testStore) store.Result { return s.put(t, "r", `null`) }, map[string][]string{
			"r": {"put / null"}, "r/a": {"put / null"}, "r/a/x": {"put / null"}, "r/a/y": {"put / null"},
			"r/b": {"put / null"}, "r/b/x": {"put / null"}, "r/c": {"put / null"}}},
		{"DELETE key", func(t *testing.T, s *testStore) store.Result { return s.del(t, "r/a") }, map[string][]string{
			"r": {"put /a null"}, "r/a": {"put / null"}, "r/a/x": {"put / null"}, "r/a/y": {"put / null"}}},
		{"PUT child under a leaf", func(t *testing.T, s *testStore) store.Result { return s.put(t, "r/b/x", `3`) }, map[string][]string{
			"r": {"put /b/x 3"}, "r/b": {"put /x 3"}, "r/b/x": {"put / 3"}}},
		{"DELETE child under a leaf", func(t *testing.T, s *testStore) store.Result { return s.del(t, "r/b/x") }, map[string][]string{
			"r": {"put /b/x null"}, "r/b": {"put /x null"}, "r/b/x": {"put / null"}}},
		{"PATCH room emptying it", func(t *testing.T, s *testStore) store.Result { return s.patch(t, "r", `{"a":null,"b":null}`) }, map[string][]string{
			"r": {`patch / {"a":null,"b":null}`}, "r/a": {"put / null"}, "r/a/x": {"put / null"}, "r/a/y": {"put / null"},
			"r/b": {"put / null"}, "r/b/x": {"put / null"}, "r/c": {"put / null"}}},
		{"write to another room", func(t *testing.T, s *testStore) store.Result { return s.put(t, "r2/a", `{"x":9}`) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t, store.Options{})
			s.put(t, "r", setup)
			ws := map[string]*store.Watcher{}
			for _, at := range watched {
				ws[at] = s.watch(t, at, 0, false)
				if evs := drain(t, ws[at]); len(evs) != 1 || evs[0].Rev != 1 {
					t.Fatalf("snapshot of %s: %v", at, evs)
				}
			}
			want := tc.want
			var res store.Result
			if tc.write == nil { // POST
				res = s.push(t, "r/a", `"v"`)
				want = map[string][]string{"r": {"put /a/" + res.Name + ` "v"`}, "r/a": {"put /" + res.Name + ` "v"`}}
			} else {
				res = tc.write(t, s)
			}
			s.waitPublished(t, res.Rev)
			for _, at := range watched {
				checkEvents(t, "watcher of "+at, drain(t, ws[at]), res.Rev, want[at]...)
			}
		})
	}
}

func TestWatchResumeReplays(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	var revs []uint64 // revisions of room r
	for i := range 10 {
		revs = append(revs, s.put(t, "r/k", fmt.Sprint(i)).Rev)
		s.put(t, "other/k", fmt.Sprint(i))
	}
	for i, after := range revs {
		w := s.watch(t, "r", after, true)
		evs := drain(t, w)
		if !w.Replayed() {
			t.Fatalf("resume after %d: snapshot, want a replay", after)
		}
		if len(evs) != len(revs)-1-i {
			t.Fatalf("resume after %d: %v, want the %d later changes of r", after, evs, len(revs)-1-i)
		}
		for j, ev := range evs {
			if ev.Rev != revs[i+1+j] || ev.Path != "/k" || string(ev.Data) != fmt.Sprint(i+1+j) {
				t.Errorf("resume after %d: event %d is %v, want %d:put /k %d", after, j, ev, revs[i+1+j], i+1+j)
			}
		}
		w.Close()
	}
	// Between the catch-up and live changes nothing is lost or repeated.
	w := s.watch(t, "r/k", revs[4], true)
	if evs := drain(t, w); len(evs) != 5 {
		t.Fatalf("resume after %d: %v, want 5 events", revs[4], evs)
	}
	res := s.put(t, "r/k", `"live"`)
	checkEvents(t, "live after a resume", waitEvents(t, w, 1), res.Rev, `put / "live"`)
	s.sync(t)
	if evs := drain(t, w); len(evs) != 0 {
		t.Errorf("after the live event: %v, want nothing", evs)
	}
}

// TestWatchResumeAcrossPagesWhileWriting: a resume over more than one log page
// while writers keep going delivers every change once, in order.
func TestWatchResumeAcrossPagesWhileWriting(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	write := func(n, writers int) {
		var wg sync.WaitGroup
		for g := range writers {
			wg.Go(func() {
				for i := range n / writers {
					if _, err := s.Put(t.Context(), mustPath(t, "r", fmt.Sprintf("k%d", g), ""), []byte(fmt.Sprint(i)), store.Cond{}); err != nil {
						t.Errorf("Put: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	first := s.put(t, "r/start", `0`).Rev
	write(640, 8) // 2.5 catch-up pages
	w := s.watch(t, "r", first, true)
	done := make(chan struct{})
	go func() { defer close(done); write(200, 4) }()
	<-done
	s.sync(t)
	last := s.Stats().Revision
	evs := waitEvents(t, w, int(last-first))
	if !w.Replayed() {
		t.Fatal("resume: snapshot, want a replay")
	}
	evs = append(evs, drain(t, w)...)
	if len(evs) != int(last-first) {
		t.Fatalf("%d events, want %d", len(evs), last-first)
	}
	for i, ev := range evs {
		if ev.Rev != first+1+uint64(i) {
			t.Fatalf("event %d has rev %d, want %d", i, ev.Rev, first+1+uint64(i))
		}
	}
}

func TestWatchResumeSnapshots(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	s.put(t, "r", `{"a":1}`) // 1
	s.del(t, "r")            // 2
	s.put(t, "r", `{"b":2}`) // 3: re-created
	s.put(t, "r/c", `3`)     // 4
	s.put(t, "gone/k", `1`)  // 5
	s.del(t, "gone")         // 6
	for _, tc := range []struct {
		name   string
		at     string
		after  uint64
		replay []string // events when replaying; nil: a snapshot
	}{
		{"in the future", "r", 7, nil},
		{"far in the future", "r", 1 << 60, nil},
		{"before the room was deleted and re-created", "r", 1, nil},
		{"before the room existed", "r", 0, nil},
		{"just before the re-creation", "r", 2, []string{`3:put / {"b":2}`, "4:put /c 3"}},
		{"key, just before the re-creation", "r/b", 2, []string{"3:put / 2"}},
		{"at the head", "r", 6, []string{}},
		{"between", "r", 3, []string{"4:put /c 3"}},
		{"a deleted room", "gone", 5, nil},
		{"a room never written", "never", 0, nil},
	} {
		w := s.watch(t, tc.at, tc.after, true)
		evs := drain(t, w)
		if tc.replay == nil {
			want, _ := s.Get(loc(t, tc.at))
			if w.Replayed() || len(evs) != 1 || evs[0].Rev != 6 || evs[0].Path != "/" || string(evs[0].Data) != string(want.Data) {
				t.Errorf("%s: replayed %v, %v; want a snapshot 6:put / %s", tc.name, w.Replayed(), evs, want.Data)
			}
			continue
		}
		var got []string
		for _, ev := range evs {
			got = append(got, ev.String())
		}
		if !w.Replayed() || !slices.Equal(got, tc.replay) && !(len(got) == 0 && len(tc.replay) == 0) {
			t.Errorf("%s: replayed %v, %q; want a replay of %q", tc.name, w.Replayed(), got, tc.replay)
		}
	}
}

// TestWatchEviction: a watcher that never reads is evicted; another watcher of
// the same room that keeps reading gets every change, and writes go on.
func TestWatchEviction(t *testing.T) {
	t.Parallel()
	// The queue must hold what one commit group brings a reader that is
	// merely descheduled (the test runs under -race, maybe on one CPU).
	s := openStore(t, store.Options{WatchQueue: 64})
	s.put(t, "r/k", `-1`)
	slow := s.watch(t, "r", 0, false)
	snap := drain(t, slow)[0] // then it stops reading
	fast := s.watch(t, "r/k", 0, false)
	drain(t, fast)

	const n = 300
	got := make(chan []store.Event)
	go func() {
		var evs []store.Event
		deadline := time.After(20 * time.Second)
		for len(evs) < n {
			select {
			case <-fast.Ready():
				e, err := fast.Next()
				if err != nil {
					t.Errorf("fast watcher: %v", err)
					got <- evs
					return
				}
				evs = append(evs, e...)
			case <-deadline:
				got <- evs
				return
			}
		}
		got <- evs
	}()
	start := time.Now()
	for i := range n {
		if _, err := s.Put(t.Context(), loc(t, "r/k"), []byte(fmt.Sprint(i)), store.Cond{}); err != nil {
			t.Fatalf("write %d with a stuck watcher: %v", i, err)
		}
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("%d writes took %v with a stuck watcher", n, d)
	}
	evs := <-got
	if len(evs) != n {
		t.Fatalf("fast watcher got %d events, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if string(ev.Data) != fmt.Sprint(i) || ev.Path != "/" || i > 0 && ev.Rev != evs[i-1].Rev+1 {
			t.Fatalf("fast watcher event %d: %v", i, ev)
		}
	}
	if err := waitErr(t, slow); !errors.Is(err, store.ErrEvicted) {
		t.Fatalf("stuck watcher: %v, want ErrEvicted", err)
	}
	if st := s.Stats(); st.Watchers != 2 {
		t.Errorf("Stats().Watchers = %d, want 2 until closed", st.Watchers)
	}
	slow.Close()
	if st := s.Stats(); st.Watchers != 1 {
		t.Errorf("Stats().Watchers = %d after closing one, want 1", st.Watchers)
	}
	// The evicted watcher resumes from its last event and misses nothing.
	again := s.watch(t, "r", snap.Rev, true)
	replay := drain(t, again)
	if !again.Replayed() || len(replay) != n || string(replay[n-1].Data) != fmt.Sprint(n-1) {
		t.Errorf("resume after eviction: replayed %v, %d events, want %d", again.Replayed(), len(replay), n)
	}
}

// TestWatchConcurrent: many writers on a few rooms and several watchers per
// room; each watcher sees every acknowledged change of its location exactly
// once, in revision order, and ends at the stored value.
func TestWatchConcurrent(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	rooms := []string{"c0", "c1", "c2"}
	watched := []string{"", "", "/k0", "/k0/x0", "/k1"}
	type watcher struct {
		at     store.Path
		w      *store.Watcher
		events []store.Event
	}
	var ws []*watcher
	for _, r := range rooms {
		for _, suffix := range watched {
			w := &watcher{at: loc(t, r+suffix), w: s.watch(t, r+suffix, 0, false)}
			w.events = drain(t, w.w) // the snapshot, read by the first Next
			ws = append(ws, w)
		}
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for _, w := range ws {
		readers.Go(func() {
			for {
				select {
				case <-w.w.Ready():
					evs, err := w.w.Next()
					if err != nil {
						t.Errorf("watcher of %s: %v", w.at, err)
						return
					}
					w.events = append(w.events, evs...)
				case <-stop:
					w.events = append(w.events, drain(t, w.w)...)
					return
				}
			}
		})
	}

	type ack struct {
		rev uint64
		at  store.Path
	}
	const writers, perWriter = 8, 60
	acks := make([][]ack, writers)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				room := rooms[(g+i)%len(rooms)]
				key := fmt.Sprintf("k%d", i%3)
				at := mustPath(t, room, key, "")
				var res store.Result
				var err error
				switch i % 4 {
				case 0:
					res, err = s.Put(t.Context(), at, []byte(fmt.Sprintf(`{"x0":%d,"x1":%d}`, i, g)), store.Cond{})
				case 1:
					at.Child = fmt.Sprintf("x%d", g%2)
					res, err = s.Put(t.Context(), at, []byte(fmt.Sprint(i)), store.Cond{})
				case 2:
					res, err = s.Push(t.Context(), at, []byte(fmt.Sprint(i)), store.Cond{})
					at.Child = res.Name
				default:
					res, err = s.Patch(t.Context(), at, []byte(fmt.Sprintf(`{"x0":%d,"x2":null}`, g)), store.Cond{})
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
				acks[g] = append(acks[g], ack{res.Rev, at})
			}
		})
	}
	wg.Wait()
	s.sync(t)
	close(stop)
	readers.Wait()

	all := slices.Concat(acks...)
	for _, w := range ws {
		evs := w.events
		if len(evs) == 0 || evs[0].Path != "/" || evs[0].Rev != 0 {
			t.Fatalf("watcher of %s: first event %v, want a snapshot at 0", w.at, evs)
		}
		var local any
		for i, ev := range evs {
			if i > 0 && ev.Rev <= evs[i-1].Rev {
				t.Errorf("watcher of %s: rev %d after %d", w.at, ev.Rev, evs[i-1].Rev)
			}
			local = storetest.ApplyEvent(t, local, w.at.Depth(), ev)
		}
		seen := map[uint64]bool{}
		for _, ev := range evs[1:] {
			seen[ev.Rev] = true
		}
		for _, a := range all {
			inside := w.at.Contains(a.at)
			if inside != seen[a.rev] && (inside || !a.at.Contains(w.at)) {
				t.Errorf("watcher of %s: change %d at %s seen %v, want %v", w.at, a.rev, a.at, seen[a.rev], inside)
			}
			delete(seen, a.rev)
		}
		if len(seen) > 0 {
			t.Errorf("watcher of %s: events for revisions nobody wrote: %v", w.at, seen)
		}
		v, _ := s.Get(w.at)
		if !reflect.DeepEqual(local, decode(t, v.Data)) {
			t.Errorf("watcher of %s ends at %s, want %s", w.at, model.MustJSON(local), v.Data)
		}
	}
}

func TestCloseEndsWatchersAndWrites(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sigbase.db")
	s := openPath(t, path, store.Options{})
	s.put(t, "r/k", `0`)
	live := s.watch(t, "r", 0, false)
	drain(t, live)
	fresh := s.watch(t, "r", 0, false) // never read: still wants its snapshot

	// Writers race with Close: each write is either acknowledged (and durable)
	// or refused with ErrClosed.
	type ack struct {
		at    string
		value int
	}
	var mu sync.Mutex
	var acked []ack
	var wg sync.WaitGroup
	started := make(chan struct{}, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				at := fmt.Sprintf("w%d/k", g)
				_, err := s.Put(t.Context(), loc(t, at), []byte(fmt.Sprint(i)), store.Cond{})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("write during Close: %v, want nil or ErrClosed", err)
					return
				}
				mu.Lock()
				acked = append(acked, ack{at, i})
				mu.Unlock()
				if i == 5 {
					started <- struct{}{}
				}
			}
		})
	}
	for range 4 {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	for name, w := range map[string]*store.Watcher{"live": live, "fresh": fresh} {
		if err := waitErr(t, w); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s watcher after Close: %v, want ErrClosed", name, err)
		}
	}
	if _, err := s.Put(t.Context(), loc(t, "r/k"), []byte(`1`), store.Cond{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Patch(t.Context(), loc(t, "r"), []byte(`{"k":1}`), store.Cond{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Patch after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Watch(loc(t, "r"), 0, false); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}

	s = openPath(t, path, store.Options{})
	last := map[string]int{}
	for _, a := range acked {
		last[a.at] = max(last[a.at], a.value)
	}
	for at, v := range last {
		var got int
		if err := json.Unmarshal(s.get(t, at).Data, &got); err != nil || got < v {
			t.Errorf("after reopen %s = %d (%v), want at least the acknowledged %d", at, got, err, v)
		}
	}
}

func TestWatcherClose(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	w := s.watch(t, "r", 0, false)
	drain(t, w)
	if got := s.Stats().Watchers; got != 1 {
		t.Fatalf("Stats().Watchers = %d, want 1", got)
	}
	w.Close()
	w.Close() // twice is fine
	if got := s.Stats().Watchers; got != 0 {
		t.Errorf("Stats().Watchers = %d after Close, want 0", got)
	}
	s.put(t, "r/k", `1`)
	s.sync(t)
	if evs, err := w.Next(); !errors.Is(err, store.ErrClosed) || len(evs) != 0 {
		t.Errorf("Next after Close: %v, %v; want ErrClosed", evs, err)
	}
}
