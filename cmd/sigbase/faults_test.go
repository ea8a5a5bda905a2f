package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce  sync.Once
	sigbaseBin string
	buildErr   error
)

// sigbaseBinary builds the real binary once per test run.
func sigbaseBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sigbase-bin")
		if err != nil {
			buildErr = err
			return
		}
		sigbaseBin = filepath.Join(dir, "sigbase")
		out, err := exec.Command("go", "build", "-o", sigbaseBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return sigbaseBin
}

// process is the binary running as a child.
type process struct {
	cmd *exec.Cmd
	url string
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(sigbaseBinary(t), append([]string{"serve"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no listening line: %v", err)
	}
	go io.Copy(io.Discard, out)
	p := &process{cmd: cmd, url: strings.TrimPrefix(strings.TrimSpace(line), "listening on ")}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *process) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// faultWatcher follows one room over SSE across server restarts, resuming
// with Last-Event-ID, and keeps the room's state built from its events.
type faultWatcher struct {
	room string

	mu     sync.Mutex
	lastID uint64
	ids    int // events applied
	state  map[string]json.RawMessage
	err    error
}

func (w *faultWatcher) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = fmt.Errorf(format, args...)
	}
}

// follow reads streams until ctx ends, reconnecting to whatever url returns.
func (w *faultWatcher) follow(ctx context.Context, url func() string) {
	for ctx.Err() == nil {
		w.stream(ctx, url())
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *faultWatcher) stream(ctx context.Context, base string) {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/rooms/"+w.room, nil)
	req.Header.Set("Accept", "text/event-stream")
	w.mu.Lock()
	if w.state != nil {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(w.lastID, 10))
	}
	w.mu.Unlock()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	changes(res.Body, w.apply)
}

// changes reads a stream and calls apply with each put and patch event.
func changes(body io.Reader, apply func(id, event, data string)) {
	r := bufio.NewReader(body)
	var id, event, data string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch line = strings.TrimSuffix(line, "\n"); {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "":
			if event == "put" || event == "patch" {
				apply(id, event, data)
			}
			id, event, data = "", "", ""
		}
	}
}

func (w *faultWatcher) apply(idText, event, data string) {
	id, err := strconv.ParseUint(idText, 10, 64)
	var msg struct {
		Path string          `json:"path"`
		Data json.RawMessage `json:"data"`
	}
	if err != nil || json.Unmarshal([]byte(data), &msg) != nil {
		w.fail("bad event id %q data %q", idText, data)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != nil && id <= w.lastID && !(msg.Path == "/" && id == w.lastID) {
		w.err = fmt.Errorf("room %s: event %d after %d: out of order or twice", w.room, id, w.lastID)
		return
	}
	w.lastID, w.ids = id, w.ids+1
	switch {
	case msg.Path == "/" && event == "put":
		w.state = map[string]json.RawMessage{}
		if string(msg.Data) != "null" {
			json.Unmarshal(msg.Data, &w.state)
		}
	case event == "put":
		if w.state == nil {
			w.state = map[string]json.RawMessage{}
		}
		w.state[strings.TrimPrefix(msg.Path, "/")] = msg.Data
	default:
		w.err = fmt.Errorf("unexpected %s %s", event, msg.Path)
	}
}

// SIGKILL the server repeatedly under write and watch load. After every
// restart: each acknowledged write is there, and each watcher's copy of its
// room, built only from events (resumed with Last-Event-ID), equals the
// room; no event came twice or out of order.
func TestKillCyclesLoseNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "sigbase.db")
	p := startProcess(t, "--addr", "127.0.0.1:0", "--data", data, "--rate-limit", "0")
	addr := strings.TrimPrefix(p.url, "http://")
	var cur atomic.Pointer[process]
	cur.Store(p)
	url := func() string { return cur.Load().url }

	const rooms, writers, cycles = 3, 6, 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watchers []*faultWatcher
	var wg sync.WaitGroup
	for r := 0; r < rooms; r++ {
		for i := 0; i < 2; i++ {
			w := &faultWatcher{room: fmt.Sprintf("room%d", r)}
			watchers = append(watchers, w)
			wg.Add(1)
			go func() { defer wg.Done(); w.follow(ctx, url) }()
		}
	}
	type ack struct {
		room, key string
		value     int
	}
	var ackMu sync.Mutex
	acked := map[string]ack{} // room/key → the last acknowledged value
	var total atomic.Int64
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 2 * time.Second}
			room, key := fmt.Sprintf("room%d", i%rooms), fmt.Sprintf("w%d", i)
			for v := 1; ctx.Err() == nil; v++ {
				req, _ := http.NewRequestWithContext(ctx, "PUT", url()+"/rooms/"+room+"/"+key, strings.NewReader(strconv.Itoa(v)))
				res, err := client.Do(req)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == 200 {
					ackMu.Lock()
					acked[room+"/"+key] = ack{room, key, v}
					ackMu.Unlock()
					total.Add(1)
				}
			}
		}()
	}

	check := func(cycle int) {
		t.Helper()
		ackMu.Lock()
		want := make(map[string]ack, len(acked))
		for k, v := range acked {
			want[k] = v
		}
		ackMu.Unlock()
		for _, a := range want {
			code, body := request(t, "GET", url()+"/rooms/"+a.room+"/"+a.key, "")
			got, _ := strconv.Atoi(body)
			if code != 200 || got < a.value {
				t.Fatalf("cycle %d: %s/%s = %s, but %d was acknowledged", cycle, a.room, a.key, body, a.value)
			}
		}
	}
	for cycle := 1; cycle <= cycles; cycle++ {
		time.Sleep(time.Duration(150+rand.IntN(350)) * time.Millisecond)
		cur.Load().kill()
		next := startProcess(t, "--addr", addr, "--data", data, "--rate-limit", "0")
		cur.Store(next)
		check(cycle)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()

	// Quiesced: every watcher, resumed once more, must match its room.
	for _, w := range watchers {
		wctx, wcancel := context.WithTimeout(context.Background(), 3*time.Second)
		go w.follow(wctx, url)
		_, body := request(t, "GET", url()+"/rooms/"+w.room, "")
		var room map[string]json.RawMessage
		json.Unmarshal([]byte(body), &room)
		deadline := time.Now().Add(3 * time.Second)
		for {
			w.mu.Lock()
			same, err := reflect.DeepEqual(w.state, room), w.err
			w.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if same {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("watcher of %s built %v from its events; the room is %s", w.room, w.state, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
		wcancel()
	}
	t.Logf("%d kill cycles, %d acknowledged writes verified, %d watchers consistent", cycles, total.Load(), len(watchers))
}

// Thousands of connections that never finish their headers: a normal
// client is still served quickly, and the server drops them after its
// header timeout.
func TestSlowlorisDoesNotStarveClients(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"), "--rate-limit", "0")
	addr := strings.TrimPrefix(s.url, "http://")
	const sockets = 3000
	conns := make([]net.Conn, 0, sockets)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < sockets; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		fmt.Fprintf(c, "GET /rooms/r HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		conns = append(conns, c)
	}
	var slowest time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		if code, _ := request(t, "PUT", s.url+"/rooms/r/k", strconv.Itoa(i)); code != 200 {
			t.Fatalf("PUT under slowloris: %d", code)
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 500*time.Millisecond {
		t.Errorf("slowest request under %d half-open connections: %v", sockets, slowest)
	}
	// The header timeout (5 s) closes them: reads see EOF.
	closed := 0
	for _, c := range conns[:50] {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed != 50 {
		t.Errorf("%d of 50 half-open connections were closed by the server", closed)
	}
	t.Logf("%d half-open sockets held; slowest normal request %v", sockets, slowest)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A full database refuses writes clearly while reads and streams go on.
func TestFullDatabaseKeepsReadsAndStreams(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"), "--max-db-size", "1MiB",
		"--keepalive", "200ms", "--rate-limit", "0")
	stream := openStream(t, s.url+"/rooms/watched")
	request(t, "PUT", s.url+"/rooms/watched/k", `"before"`)
	stream.waitFor(t, `"data":"before"`)

	value := `"` + strings.Repeat("x", 60000) + `"`
	var code int
	var body string
	for i := 0; i < 200; i++ {
		if code, body = request(t, "PUT", fmt.Sprintf("%s/rooms/fill%d/k", s.url, i), value); code != 200 {
			break
		}
	}
	if code != 429 || !strings.Contains(body, "database full") {
		t.Fatalf("filling the database ended with %d %s, want 429 database full", code, body)
	}
	if code, body := request(t, "GET", s.url+"/rooms/watched/k", ""); code != 200 || body != `"before"` {
		t.Fatalf("read of a full database: %d %s", code, body)
	}
	// The stream is still alive: more keep-alives arrive.
	seen := strings.Count(stream.String(), "event: keep-alive")
	for deadline := time.Now().Add(5 * time.Second); strings.Count(stream.String(), "event: keep-alive") <= seen; {
		if time.Now().After(deadline) {
			t.Fatal("the stream went quiet after the database filled")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := request(t, "DELETE", s.url+"/rooms/fill0", ""); code != 200 && code != 429 {
		t.Fatalf("delete in a full database: %d", code)
	}
}

// requireFull fails a test that needs root or a tool when the full suite
// runs (SIGBASE_FULL_TESTS=1, as in .ci/test), and skips it otherwise.
func requireFull(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("SIGBASE_FULL_TESTS") == "1" {
		t.Fatalf("this test needs %s", what)
	}
	t.Skipf("needs %s (set SIGBASE_FULL_TESTS=1 to make that a failure)", what)
}

// A disk that fills up (a 2 MiB tmpfs: real ENOSPC from the kernel) turns
// writes into prompt 500s, never a hang; reads go on.
func TestDiskFullAnswers500(t *testing.T) {
	t.Parallel()
	requireFull(t, os.Geteuid() == 0, "root, to mount a small tmpfs")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	s := startServer(t, nil, "--data", filepath.Join(dir, "db"), "--rate-limit", "0")
	request(t, "PUT", s.url+"/rooms/keep/k", `"kept"`)
	value := `"` + strings.Repeat("x", 60000) + `"`
	client := &http.Client{Timeout: 5 * time.Second}
	var code int
	var body string
	for i := 0; i < 100; i++ {
		req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/rooms/fill%d/k", s.url, i), strings.NewReader(value))
		start := time.Now()
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("write %d on a full disk: %v after %v (a hang?)", i, err, time.Since(start))
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if code, body = res.StatusCode, string(b); code != 200 {
			break
		}
	}
	if code != 500 && code != 503 || !strings.HasPrefix(body, `{"error":"`) {
		t.Fatalf("the disk never filled, or its error came out as %d %s", code, body)
	}
	if c, b := request(t, "GET", s.url+"/rooms/keep/k", ""); c != 200 || b != `"kept"` {
		t.Fatalf("read after disk errors: %d %s", c, b)
	}
}
