package api

import (
	"bufio"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
)

// The encoder's frames, byte for byte: an id on every change and never an
// empty one, data split on line breaks, control events without ids.
func TestFrames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, got, want string
	}{
		{"opening", string(appendOpening(nil, 1000, 15000)), "retry: 1000\nevent: keep-alive\ndata: {\"interval\":15000}\n\n"},
		{"put", string(appendChange(nil, store.Event{Rev: 41, Path: "/", Data: []byte(`{"a":1}`)})),
			"id: 41\nevent: put\ndata: {\"path\":\"/\",\"data\":{\"a\":1}}\n\n"},
		{"patch at revision 0", string(appendChange(nil, store.Event{Rev: 0, Patch: true, Path: "/k", Data: []byte(`null`)})),
			"id: 0\nevent: patch\ndata: {\"path\":\"/k\",\"data\":null}\n\n"},
		{"line breaks", string(appendChange(nil, store.Event{Rev: 2, Path: "/", Data: []byte("[1,\n2,\r\n3,\r4]")})),
			"id: 2\nevent: put\ndata: {\"path\":\"/\",\"data\":[1,\ndata: 2,\ndata: 3,\ndata: 4]}\n\n"},
		{"keep-alive", string(appendControl(nil, "keep-alive", "")), "event: keep-alive\ndata: null\n\n"},
		{"cancel", string(appendControl(nil, "cancel", `too "slow"`)), "event: cancel\ndata: \"too \\\"slow\\\"\"\n\n"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
}

// encodeChunk's frame is the event's SSE frame as one chunk, however many
// hex digits its size takes.
func TestEncodeChunk(t *testing.T) {
	for _, n := range []int{0, 1, 100, 200, 5000, 70000} {
		ev := store.Event{Rev: 7, Path: "/k", Data: []byte(`"` + strings.Repeat("x", n) + `"`)}
		want := appendChunk(nil, appendChange(nil, ev))
		if got := encodeChunk(ev); string(got) != string(want) {
			t.Errorf("data of %d bytes: chunk %.40q…, want %.40q…", n, got, want)
		}
	}
}

// Watchers of one location share each change's frame: one encode per change
// and watched location, however many watch. It counts the encodes of its own
// values; not parallel, as it sets the package's hook.
func TestWatchersShareFrames(t *testing.T) {
	var mu sync.Mutex
	encodes := map[string]int{}
	count := func(ev store.Event) {
		if strings.HasPrefix(string(ev.Data), `"share-`) {
			mu.Lock()
			encodes[string(ev.Data)]++
			mu.Unlock()
		}
	}
	encodeHook.Store(&count)
	t.Cleanup(func() { encodeHook.Store(nil) })
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r1", `{"k":{"c":1}}`)
	var room, key []*sseConn
	for range 4 {
		room = append(room, ts.watch("/rooms/r1"))
		key = append(key, ts.watch("/rooms/r1/k"))
	}
	for _, c := range append(slices.Clone(room), key...) {
		c.nextChange() // the snapshot
	}
	for i := range 3 {
		v := `"share-` + strconv.Itoa(i) + `"`
		ts.mustDo(200, "PUT", "/rooms/r1/k/c", v)
		for _, c := range room {
			c.expect("put", "/k/c", v)
		}
		for _, c := range key {
			c.expect("put", "/c", v)
		}
		mu.Lock()
		n := encodes[v]
		mu.Unlock()
		if n != 2 {
			t.Errorf("write %d to 4+4 watchers of 2 locations: %d frames encoded, want 2", i, n)
		}
	}
}

// A backlog of live events goes out in one write as back-to-back shared
// chunks, one event in each, in revision order.
func TestBacklogOfSharedChunks(t *testing.T) {
	parallel(t)
	st, _ := openTestStore(t, store.Options{})
	t.Cleanup(func() { st.Close() })
	at, err := store.NewPath("r1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	watch := func() *store.Watcher {
		w, err := st.Watch(at, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		<-w.Ready()
		if _, err := w.Next(); err != nil { // the snapshot
			t.Fatal(err)
		}
		return w
	}
	lagging, witness := watch(), watch()
	// The witness sees each write after the one before it was offered to
	// every watcher: the publisher hands out one group after another.
	var revs []uint64
	for i := range 4 {
		res, err := st.Put(t.Context(), at, []byte(`{"n":`+strconv.Itoa(i)+`}`), store.Cond{})
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, res.Rev)
		for seen := uint64(0); seen < res.Rev; {
			<-witness.Ready()
			evs, err := witness.Next()
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) > 0 {
				seen = evs[len(evs)-1].Rev
			}
		}
	}
	server, client := net.Pipe()
	defer client.Close()
	s := &stream{w: lagging, at: at, ws: &watches{metrics: NewMetrics()}, out: &connWriter{conn: server, timeout: 5 * time.Second}}
	done := make(chan bool, 1)
	go func() { done <- s.deliver(); server.Close() }()
	r := bufio.NewReader(client)
	var got []string
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(line, "\r\n"), 16, 32)
		if err != nil {
			t.Fatalf("chunk size line %q: %v", line, err)
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(r, chunk); err != nil || string(chunk[n:]) != "\r\n" {
			t.Fatalf("chunk of %d bytes: %q, %v", n, chunk, err)
		}
		got = append(got, string(chunk[:n]))
	}
	if !<-done {
		t.Error("deliver ended the stream")
	}
	if len(got) < 3 {
		t.Fatalf("%d chunks, want the 3 or 4 queued events in one write: %q", len(got), got)
	}
	for i, frame := range got {
		want := string(appendChange(nil, store.Event{Rev: revs[i], Path: "/", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}))
		if frame != want {
			t.Errorf("chunk %d: %q, want %q", i, frame, want)
		}
	}
}
