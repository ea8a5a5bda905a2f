package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
)

// testServer is a real store (a bbolt file in t.TempDir(), or a prefix of
// the test etcd: backend_test.go) behind a real HTTP listener.
type testServer struct {
	t    *testing.T
	st   *store.Store
	base uint64 // the revision before the store's first write: ts.rev
	api  *Server
	srv  *httptest.Server
}

func newTestServer(t *testing.T, cfg Config, opts store.Options) *testServer {
	t.Helper()
	st, base := openTestStore(t, opts)
	ts := &testServer{t: t, st: st, base: base, api: New(st, cfg)}
	ts.srv = httptest.NewServer(ts.api)
	t.Cleanup(func() {
		ts.shutdown()
		ts.srv.Close()
		st.Close()
	})
	return ts
}

// shutdown starts the API's shutdown (streams get cancel, /readyz 503)
// without waiting for it.
func (ts *testServer) shutdown() {
	go ts.api.Shutdown(context.Background())
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends one request; headers are name, value pairs.
func (ts *testServer) do(method, path, body string, headers ...string) response {
	ts.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.srv.URL+path, r)
	if err != nil {
		ts.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := ts.srv.Client().Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		ts.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// mustDo is do that expects a status.
func (ts *testServer) mustDo(status int, method, path, body string, headers ...string) response {
	ts.t.Helper()
	res := ts.do(method, path, body, headers...)
	if res.status != status {
		ts.t.Fatalf("%s %s %.80s: got %d %.200s, want %d", method, path, body, res.status, res.body, status)
	}
	return res
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("got invalid JSON %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON %q: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// frame is one SSE event as read off the wire.
type frame struct {
	id, event, data string
	retry           string
}

// sseConn is a raw SSE client: it reads frames exactly as sent.
type sseConn struct {
	t   *testing.T
	res *http.Response
	r   *bufio.Reader
}

func (ts *testServer) watch(path string, headers ...string) *sseConn {
	ts.t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.srv.URL+path, nil)
	if err != nil {
		ts.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := ts.srv.Client().Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		ts.t.Fatalf("watch %s: %d %s", path, res.StatusCode, b)
	}
	c := &sseConn{t: ts.t, res: res, r: bufio.NewReader(res.Body)}
	ts.t.Cleanup(func() { res.Body.Close() })
	return c
}

// next reads one frame, failing the test after a timeout.
func (c *sseConn) next() frame {
	c.t.Helper()
	f, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("reading SSE frame: %v", err)
	}
	return f
}

func (c *sseConn) read(timeout time.Duration) (frame, error) {
	type result struct {
		f   frame
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var f frame
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				ch <- result{f, err}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "" {
				ch <- result{f, nil}
				return
			}
			name, value, _ := strings.Cut(line, ": ")
			switch name {
			case "id":
				f.id = value
			case "event":
				f.event = value
			case "data":
				if f.data != "" {
					f.data += "\n"
				}
				f.data += value
			case "retry":
				f.retry = value
			}
		}
	}()
	select {
	case r := <-ch:
		return r.f, r.err
	case <-time.After(timeout):
		c.res.Body.Close()
		return frame{}, io.ErrNoProgress
	}
}

// nextChange skips keep-alives and returns the next put or patch.
func (c *sseConn) nextChange() frame {
	c.t.Helper()
	for {
		f := c.next()
		if f.event != "keep-alive" && f.retry == "" {
			return f
		}
	}
}

// expect reads the next change and checks its event, path and data.
func (c *sseConn) expect(event, path, data string) frame {
	c.t.Helper()
	f := c.nextChange()
	var msg struct {
		Path string          `json:"path"`
		Data json.RawMessage `json:"data"`
	}
	if f.event != event {
		c.t.Fatalf("got event %q (%s), want %q", f.event, f.data, event)
	}
	if err := json.Unmarshal([]byte(f.data), &msg); err != nil {
		c.t.Fatalf("data %q: %v", f.data, err)
	}
	if msg.Path != path {
		c.t.Fatalf("got path %q (%s), want %q", msg.Path, f.data, path)
	}
	jsonEqual(c.t, string(msg.Data), data)
	return f
}

func httptestRequest(target string) *http.Request {
	return httptest.NewRequest(http.MethodGet, target, nil)
}

// syncWriter serializes writes from the server's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
