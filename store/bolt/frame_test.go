package bolt

import (
	"fmt"
	"github.com/sigbase/sigbase/store"
	"sync"
	"testing"
)

// TestFrameSharedPerLocation: live watchers of one location get one
// encoding of each change, the very same bytes; another location, another
// key, a snapshot, a replay or an altered event are encoded on their own.
func TestFrameSharedPerLocation(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{})
	s.put(t, "r", `{"a":{"x":1}}`)
	const perLocation = 5
	locations := []string{"r", "r/a"}
	watchers := map[string][]*store.Watcher{}
	for _, at := range locations {
		for range perLocation {
			w := s.watch(t, at, 0, false)
			evs := drain(t, w) // the snapshot: its own
			if len(evs) != 1 {
				t.Fatalf("snapshot of %s: %v", at, evs)
			}
			if _, ok := evs[0].Frame(0, func(store.Event) []byte { return []byte("x") }); ok {
				t.Errorf("snapshot of %s has a shared frame", at)
			}
			watchers[at] = append(watchers[at], w)
		}
	}
	res := s.put(t, "r/a/x", `2`)
	s.sync(t)

	var mu sync.Mutex
	encodes := map[string]int{}
	encoder := func(key int) func(store.Event) []byte {
		return func(ev store.Event) []byte {
			mu.Lock()
			encodes[fmt.Sprintf("%d %s", key, ev.Path)]++
			mu.Unlock()
			return fmt.Appendf(nil, "%d %d %s %s", key, ev.Rev, ev.Path, ev.Data)
		}
	}
	for _, at := range locations {
		var first []byte
		// The watchers of a location take the change concurrently.
		frames := make([][]byte, perLocation)
		var wg sync.WaitGroup
		for i, w := range watchers[at] {
			wg.Go(func() {
				evs := waitEvents(t, w, 1)
				if len(evs) != 1 || evs[0].Rev != res.Rev {
					t.Errorf("watcher of %s: %v", at, evs)
					return
				}
				for key := range 2 {
					f, ok := evs[0].Frame(key, encoder(key))
					if !ok {
						t.Errorf("watcher of %s: no shared frame", at)
						return
					}
					if key == 0 {
						frames[i] = f
					}
				}
			})
		}
		wg.Wait()
		for i, f := range frames {
			if i == 0 {
				first = f
				continue
			}
			if len(f) == 0 || &f[0] != &first[0] || string(f) != string(first) {
				t.Errorf("watcher %d of %s: frame %q at %p, watcher 0's %q at %p", i, at, f, f, first, first)
			}
		}
	}
	want := map[string]int{"0 /a/x": 1, "1 /a/x": 1, "0 /x": 1, "1 /x": 1}
	if fmt.Sprint(encodes) != fmt.Sprint(want) {
		t.Errorf("encodes per key and event path: %v, want %v (one per location and key)", encodes, want)
	}

	// An event changed by its reader is no longer the shared one.
	w := watchers["r"][0]
	s.put(t, "r/a/x", `3`)
	ev := waitEvents(t, w, 1)[0]
	altered := ev
	altered.Data = []byte(`4`)
	if _, ok := altered.Frame(0, encoder(0)); ok {
		t.Error("an altered event has a shared frame")
	}
	if _, ok := ev.Frame(store.FrameKeys, encoder(0)); ok {
		t.Error("key FrameKeys has a shared frame")
	}
	// A replay from the log is encoded by each watcher itself.
	rw := s.watch(t, "r", res.Rev-1, true)
	evs := waitEvents(t, rw, 2)
	if !rw.Replayed() {
		t.Fatal("resume did not replay")
	}
	for _, ev := range evs {
		if _, ok := ev.Frame(0, encoder(0)); ok {
			t.Errorf("replayed %v has a shared frame", ev)
		}
	}
}
