package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/sigbase/sigbase/store"
)

// The exact bytes of a stream: headers, retry, snapshot with its revision,
// then changes with paths relative to the watched location.
func TestStreamWire(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r1/offer", `{"type":"offer"}`)

	req, _ := http.NewRequest("GET", ts.srv.URL+"/rooms/r1.json", nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := ts.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	for h, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
		"Access-Control-Allow-Origin": "*",
	} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	r := bufio.NewReader(res.Body)
	want := "retry: 1000\nevent: keep-alive\ndata: {\"interval\":15000}\n\n" +
		"id: " + ts.id(1) + "\nevent: put\ndata: {\"path\":\"/\",\"data\":{\"offer\":{\"type\":\"offer\"}}}\n\n"
	expectBytes(t, r, want)

	ts.mustDo(200, "PUT", "/rooms/r1/answer", `{"type":"answer","sdp":"a\nb"}`)
	expectBytes(t, r, "id: "+ts.id(2)+"\nevent: put\ndata: {\"path\":\"/answer\",\"data\":{\"sdp\":\"a\\nb\",\"type\":\"answer\"}}\n\n")
	ts.mustDo(200, "PATCH", "/rooms/r1", `{"callerCandidates/c1":{"candidate":"x"}}`)
	expectBytes(t, r, "id: "+ts.id(3)+"\nevent: patch\ndata: {\"path\":\"/\",\"data\":{\"callerCandidates/c1\":{\"candidate\":\"x\"}}}\n\n")
	ts.mustDo(200, "DELETE", "/rooms/r1", "")
	expectBytes(t, r, "id: "+ts.id(4)+"\nevent: put\ndata: {\"path\":\"/\",\"data\":null}\n\n")
}

func expectBytes(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	got := make([]byte, len(want))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(r, got); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read %q: %v", got, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %q", want)
	}
	if string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

// Watches at every level see what shared/API.md says they see.
func TestStreamPathsAndLevels(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	room := ts.watch("/rooms/r")
	offer := ts.watch("/rooms/r/offer")
	sdp := ts.watch("/rooms/r/offer/sdp")
	cands := ts.watch("/rooms/r/cands")
	room.expect("put", "/", "null")
	offer.expect("put", "/", "null")
	sdp.expect("put", "/", "null")
	cands.expect("put", "/", "null")

	ts.mustDo(200, "PUT", "/rooms/r", `{"offer":{"type":"offer","sdp":"s1"}}`)
	room.expect("put", "/", `{"offer":{"type":"offer","sdp":"s1"}}`)
	offer.expect("put", "/", `{"type":"offer","sdp":"s1"}`) // above the watch: its new value
	sdp.expect("put", "/", `"s1"`)

	ts.mustDo(200, "PUT", "/rooms/r/offer/sdp", `"s2"`)
	room.expect("put", "/offer/sdp", `"s2"`)
	offer.expect("put", "/sdp", `"s2"`)
	sdp.expect("put", "/", `"s2"`)

	ts.mustDo(200, "PATCH", "/rooms/r", `{"cands/a":{"c":1}}`)
	room.expect("patch", "/", `{"cands/a":{"c":1}}`)
	cands.expect("put", "/", `{"a":{"c":1}}`) // below the patch: the key's whole new value

	ts.mustDo(200, "PATCH", "/rooms/r/cands", `{"b":{"c":2}}`)
	room.expect("patch", "/cands", `{"b":{"c":2}}`)
	cands.expect("patch", "/", `{"b":{"c":2}}`)

	// Only when it changed: rewriting the offer unchanged tells sdp nothing,
	// and a write elsewhere tells the offer watchers nothing.
	ts.mustDo(200, "PUT", "/rooms/r", `{"offer":{"type":"offer","sdp":"s2"},"cands":{"a":{"c":1},"b":{"c":2}},"answer":"x"}`)
	room.expect("put", "/", `{"offer":{"type":"offer","sdp":"s2"},"cands":{"a":{"c":1},"b":{"c":2}},"answer":"x"}`)
	ts.mustDo(200, "PUT", "/rooms/r/offer/type", `"pranswer"`)
	room.expect("put", "/offer/type", `"pranswer"`)
	f := offer.expect("put", "/type", `"pranswer"`)
	if f.id != ts.id(6) {
		t.Errorf("offer watcher: got id %s, want %s (the room PUT did not change the offer)", f.id, ts.id(6))
	}
	ts.mustDo(200, "DELETE", "/rooms/r", "")
	room.expect("put", "/", "null")
	offer.expect("put", "/", "null")
	g := sdp.expect("put", "/", "null")
	if g.id != ts.id(7) {
		t.Errorf("sdp watcher: got id %s, want %s", g.id, ts.id(7))
	}
	cands.expect("put", "/", "null")
}

func TestStreamKeepAlive(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{KeepAlive: 100 * time.Millisecond}, store.Options{})
	c := ts.watch("/rooms/r")
	c.next() // retry
	c.expect("put", "/", "null")
	start := time.Now()
	f := c.next()
	if f.event != "keep-alive" || f.data != "null" || f.id != "" {
		t.Fatalf("got %+v, want event keep-alive, data null, no id", f)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("keep-alive after %v, want about 100ms of silence", d)
	}
}

// Resume with Last-Event-ID (header or query): every change after it, in
// order, none twice, no snapshot; a snapshot when the id cannot be honoured.
func TestStreamResume(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{Limits: store.Limits{MaxLogEntries: 5}})
	ts.mustDo(200, "PUT", "/rooms/r/offer", `"o1"`)        // 1
	ts.mustDo(200, "PUT", "/rooms/r/answer", `"a1"`)       // 2
	ts.mustDo(200, "PUT", "/rooms/r/offer", `"o2"`)        // 3
	ts.mustDo(200, "PUT", "/rooms/other/offer", `"x"`)     // 4, another room
	ts.mustDo(200, "PATCH", "/rooms/r", `{"c/x":1,"d":2}`) // 5

	c := ts.watch("/rooms/r", "Last-Event-ID", ts.id(2))
	if f := c.expect("put", "/offer", `"o2"`); f.id != ts.id(3) {
		t.Fatalf("first replayed id %s, want %s", f.id, ts.id(3))
	}
	if f := c.expect("patch", "/", `{"c/x":1,"d":2}`); f.id != ts.id(5) {
		t.Fatalf("second replayed id %s, want %s", f.id, ts.id(5))
	}
	ts.mustDo(200, "PUT", "/rooms/r/offer", `"o3"`) // 6, live
	if f := c.expect("put", "/offer", `"o3"`); f.id != ts.id(6) {
		t.Fatalf("live id %s, want %s", f.id, ts.id(6))
	}

	q := ts.watch("/rooms/r/offer?last_event_id=" + ts.id(3))
	if f := q.expect("put", "/", `"o3"`); f.id != ts.id(6) {
		t.Fatalf("query resume: id %s, want %s", f.id, ts.id(6))
	}
	upToDate := ts.watch("/rooms/r", "Last-Event-ID", ts.id(6))
	ts.mustDo(200, "PUT", "/rooms/r/answer", `"a2"`) // 7
	if f := upToDate.expect("put", "/answer", `"a2"`); f.id != ts.id(7) {
		t.Fatalf("resume at head: id %s, want %s", f.id, ts.id(7))
	}

	snapshot := `{"offer":"o3","answer":"a2","c":{"x":1},"d":2}`
	for name, id := range map[string]string{"malformed": "abc", "future": ts.id(99), "negative": "-1"} {
		f := ts.watch("/rooms/r", "Last-Event-ID", id).expect("put", "/", snapshot)
		if f.id != ts.id(7) {
			t.Errorf("%s id: snapshot id %s, want %s", name, f.id, ts.id(7))
		}
	}
	for i := 0; i < 6; i++ { // 8..13: under bbolt, trim the log (5 entries) past revision 2
		ts.mustDo(200, "PUT", "/rooms/r/n", strconv.Itoa(i))
	}
	replays, snapshots := 3, 3
	if testEtcd != nil {
		// An intended difference: the etcd backend keeps no log of its own,
		// so MaxLogEntries does not apply; etcd's history holds every change
		// until etcd compacts it, and a resume point older than the
		// compaction gets the snapshot instead.
		old := ts.watch("/rooms/r", "Last-Event-ID", ts.id(2))
		old.expect("put", "/offer", `"o2"`)
		old.expect("patch", "/", `{"c/x":1,"d":2}`)
		old.expect("put", "/offer", `"o3"`)
		old.expect("put", "/answer", `"a2"`)
		for i := 0; i < 6; i++ {
			if f := old.expect("put", "/n", strconv.Itoa(i)); f.id != ts.id(uint64(8+i)) {
				t.Fatalf("replay from etcd's history: id %s, want %s", f.id, ts.id(uint64(8+i)))
			}
		}
		replays++
		compact(t, ts.rev(13))
	}
	f := ts.watch("/rooms/r", "Last-Event-ID", ts.id(2)).nextChange()
	if f.id != ts.id(13) || !strings.HasPrefix(f.data, `{"path":"/","data":{`) {
		t.Fatalf("resume before the trimmed log (or etcd's compaction): got %+v, want a snapshot at %s", f, ts.id(13))
	}
	snapshots++
	ts.mustDo(200, "DELETE", "/rooms/r", "")        // 14
	ts.mustDo(200, "PUT", "/rooms/r/offer", `"n1"`) // 15: re-created
	across := ts.watch("/rooms/r", "Last-Event-ID", ts.id(13))
	if testEtcd == nil {
		// bbolt deletes a room's log with the room: a resume across a
		// re-creation cannot be proven complete, so it gets a snapshot.
		f = across.nextChange()
		if f.id != ts.id(15) || f.data != `{"path":"/","data":{"offer":"n1"}}` {
			t.Fatalf("resume across a re-created room: got %+v, want a snapshot at %s", f, ts.id(15))
		}
		snapshots++
	} else {
		// etcd's history holds the deletion and the re-creation: replayed.
		if f := across.expect("put", "/", "null"); f.id != ts.id(14) {
			t.Fatalf("resume across a re-created room: deletion id %s, want %s", f.id, ts.id(14))
		}
		if f := across.expect("put", "/offer", `"n1"`); f.id != ts.id(15) {
			t.Fatalf("resume across a re-created room: re-creation id %s, want %s", f.id, ts.id(15))
		}
		replays++
	}
	body := ts.mustDo(200, "GET", "/metrics", "").body
	for _, want := range []string{
		fmt.Sprintf(`sigbase_resumes_total{outcome="replay"} %d`, replays),
		fmt.Sprintf(`sigbase_resumes_total{outcome="snapshot"} %d`, snapshots),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// The r3labs client, as a real SSE client, resumes after the server ends
// the stream and gets exactly the changes it missed.
func TestStreamResumeWithR3labsClient(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r/k", `0`)

	client := sse.NewClient(ts.srv.URL + "/rooms/r")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client.ReconnectStrategy = backoff.WithContext(backoff.NewExponentialBackOff(), ctx)
	events := make(chan *sse.Event, 100)
	go client.SubscribeRawWithContext(ctx, func(ev *sse.Event) { events <- ev })
	next := func() *sse.Event {
		for {
			select {
			case ev := <-events:
				if len(ev.Event) > 0 && string(ev.Event) != "keep-alive" {
					return ev
				}
			case <-ctx.Done():
				t.Fatal("timed out")
			}
		}
	}
	if ev := next(); string(ev.Event) != "put" || string(ev.ID) != ts.id(1) {
		t.Fatalf("snapshot: %s %s, want put %s", ev.Event, ev.ID, ts.id(1))
	}
	ts.mustDo(200, "PUT", "/rooms/r/k", `1`)
	if ev := next(); string(ev.ID) != ts.id(2) {
		t.Fatalf("live: id %s", ev.ID)
	}
	ts.shutdown() // every stream gets cancel and ends
	if ev := next(); string(ev.Event) != "cancel" {
		t.Fatalf("got %s, want cancel", ev.Event)
	}
	for i := 3; i <= 5; i++ {
		ts.mustDo(200, "PUT", "/rooms/r/k", strconv.Itoa(i))
	}

	// r3labs does not reconnect after a clean end: reconnect by hand with
	// the id it kept. A fresh server config means streams stay open again.
	ts2 := &testServer{t: t, st: ts.st}
	srv := http.Server{Handler: New(ts.st, Config{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	_ = ts2
	again := sse.NewClient("http://" + ln.Addr().String() + "/rooms/r")
	again.LastEventID.Store(client.LastEventID.Load())
	again.ReconnectStrategy = backoff.WithContext(backoff.NewExponentialBackOff(), ctx)
	go again.SubscribeRawWithContext(ctx, func(ev *sse.Event) { events <- ev })
	for i := 3; i <= 5; i++ {
		ev := next()
		if string(ev.ID) != ts.id(uint64(i)) || !strings.Contains(string(ev.Data), fmt.Sprintf(`"data":%d`, i)) {
			t.Fatalf("replayed %s %s, want id %s", ev.ID, ev.Data, ts.id(uint64(i)))
		}
	}
}

// A watcher that never reads must not slow writers or other watchers; the
// server drops it.
func TestStalledWatcherHarmsOnlyItself(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{WriteTimeout: 500 * time.Millisecond}, store.Options{WatchQueue: 16})
	conn := dialSmallWindow(t, ts.srv.Listener.Addr().String())
	fmt.Fprintf(conn, "GET /rooms/r HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")

	healthy := ts.watch("/rooms/r")
	healthy.expect("put", "/", "null")
	value := `"` + strings.Repeat("v", 16000) + `"`
	const writes = 300
	var slowest time.Duration
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the healthy watcher reads everything, in order
		defer wg.Done()
		for i := 1; i <= writes; i++ {
			f := healthy.nextChange()
			if f.id != ts.id(uint64(i)) {
				t.Errorf("healthy watcher: got id %s, want %s", f.id, ts.id(uint64(i)))
				return
			}
		}
	}()
	for i := 0; i < writes; i++ { // over ten keys: a 160 KB room (etcd rewrites it whole on every write)
		start := time.Now()
		ts.mustDo(200, "PUT", fmt.Sprintf("/rooms/r/k%d", i%10), value)
		slowest = max(slowest, time.Since(start))
	}
	wg.Wait()
	if slowest > time.Second {
		t.Errorf("slowest write took %v while a watcher stalled", slowest)
	}
	// The stalled stream is dropped once a write to it times out.
	deadline := time.Now().Add(10 * time.Second)
	for ts.st.Stats().Watchers > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled watcher is still registered: %d watchers", ts.st.Stats().Watchers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A watcher that falls behind its queue is told to go (cancel) and can
// resume from its last id.
func TestSlowWatcherGetsCancel(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{WriteTimeout: 20 * time.Second}, store.Options{WatchQueue: 4})
	conn := dialSmallWindow(t, ts.srv.Listener.Addr().String())
	fmt.Fprintf(conn, "GET /rooms/r HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	// The watch is registered before its snapshot goes out: wait for that,
	// not for a guessed time.
	for deadline := time.Now().Add(5 * time.Second); ts.st.Stats().Watchers == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow watch never registered")
		}
	}
	value := `"` + strings.Repeat("v", 32000) + `"`
	// 12.8 MB of changes, more than socket buffers hold, over ten keys: the
	// room itself stays at 320 KB, under the default quota and, since the
	// etcd backend keeps a room as one etcd value, under etcd's request limit.
	for i := 0; i < 400; i++ {
		ts.mustDo(200, "PUT", fmt.Sprintf("/rooms/r/k%d", i%10), value)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(res.Body) // the stream ends after cancel
	if err != nil {
		t.Fatalf("reading the slow stream: %v", err)
	}
	if !strings.Contains(string(all), "event: cancel\ndata: \"too slow") {
		t.Fatalf("slow watcher got no cancel; stream ends with %q", tail(all, 200))
	}
	if !strings.Contains(ts.mustDo(200, "GET", "/metrics", "").body, "sigbase_watchers_evicted_total 1") {
		t.Error("eviction not counted")
	}
}

// dialSmallWindow connects with a 4 KiB receive buffer set before the
// handshake, so a reader that stops reading stalls the server quickly.
func dialSmallWindow(t *testing.T, addr string) net.Conn {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func TestShutdownCancelsStreams(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	c := ts.watch("/rooms/r")
	c.expect("put", "/", "null")
	ts.shutdown()
	f := c.next()
	if f.event != "cancel" || !strings.Contains(f.data, "shutting down") {
		t.Fatalf("got %+v, want cancel", f)
	}
	if _, err := c.read(5 * time.Second); err != io.EOF && err != io.ErrUnexpectedEOF {
		t.Fatalf("after cancel: %v, want the stream closed", err)
	}
}

func TestStreamLimits(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{MaxStreams: 3, MaxStreamsPerRoom: 2, MaxStreamsPerIP: 3}, store.Options{})
	ts.watch("/rooms/a").expect("put", "/", "null")
	ts.watch("/rooms/a/k").expect("put", "/", "null")
	res := ts.do("GET", "/rooms/a", "", "Accept", "text/event-stream")
	if res.status != 429 || res.header.Get("Retry-After") == "" || !strings.Contains(res.body, "room") {
		t.Fatalf("third stream on a room: %d %s", res.status, res.body)
	}
	ts.watch("/rooms/b").expect("put", "/", "null")
	res = ts.do("GET", "/rooms/c", "", "Accept", "text/event-stream")
	if res.status != 503 {
		t.Fatalf("stream over the total: %d %s, want 503", res.status, res.body)
	}
	perIP := newTestServer(t, Config{MaxStreamsPerIP: 1}, store.Options{})
	perIP.watch("/rooms/a").expect("put", "/", "null")
	if res := perIP.do("GET", "/rooms/b", "", "Accept", "text/event-stream"); res.status != 429 {
		t.Fatalf("second stream from one IP: %d, want 429", res.status)
	}
}

// Many writers and several watchers per room: each watcher sees every
// acknowledged write of its room once, in revision order.
func TestConcurrentWritersAndWatchers(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	const rooms, watchersPerRoom, writers, writesEach = 3, 3, 8, 40
	type watcher struct {
		room string
		c    *sseConn
	}
	var ws []watcher
	for r := 0; r < rooms; r++ {
		for i := 0; i < watchersPerRoom; i++ {
			c := ts.watch(fmt.Sprintf("/rooms/r%d", r))
			c.expect("put", "/", "null")
			ws = append(ws, watcher{fmt.Sprintf("r%d", r), c})
		}
	}
	acked := make([][]string, rooms) // ETags (= revisions) per room
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < writesEach; i++ {
				r := (w + i) % rooms
				res := ts.do("PUT", fmt.Sprintf("/rooms/r%d/w%d", r, w), strconv.Itoa(i))
				if res.status != 200 {
					t.Errorf("write: %d %s", res.status, res.body)
					return
				}
				mu.Lock()
				acked[r] = append(acked[r], strings.Trim(res.header.Get("ETag"), `"`))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, w := range ws {
		r, _ := strconv.Atoi(strings.TrimPrefix(w.room, "r"))
		want := map[string]bool{}
		for _, id := range acked[r] {
			want[id] = true
		}
		last := 0
		for range acked[r] {
			f := w.c.nextChange()
			id, _ := strconv.Atoi(f.id)
			if id <= last || !want[f.id] {
				t.Fatalf("watcher of %s: id %d after %d (acked: %v)", w.room, id, last, want[f.id])
			}
			delete(want, f.id)
			last = id
		}
	}
}

// A watcher that hangs up is noticed within about a second, not at the
// next keep-alive: its slot and its room's TTL clock are freed.
func TestHangupFreesTheStream(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{KeepAlive: time.Hour, MaxStreamsPerRoom: 1}, store.Options{})
	conn, err := net.Dial("tcp", ts.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /rooms/r HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ts.st.Stats().Watchers != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a hung-up watcher is still registered after 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.watch("/rooms/r").nextChange() // the room's one slot is free again
}
