package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// server is `sigbase serve` run in-process through run().
type server struct {
	url    string
	cancel context.CancelFunc
	done   chan error
	stdout *syncBuffer // what followed the listening line
	stderr *syncBuffer
	once   sync.Once
}

func startServer(t *testing.T, env map[string]string, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &server{cancel: cancel, done: make(chan error, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	getenv := func(k string) string { return env[k] }
	go func() {
		err := run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), getenv, pw, s.stderr)
		pw.CloseWithError(errors.New("run returned"))
		s.done <- err
	}()
	br := bufio.NewReader(pr)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v; stderr: %s", err, s.stderr)
	}
	go io.Copy(s.stdout, br)
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	s.url = url
	t.Cleanup(func() { s.stop(t) })
	if strings.HasPrefix(url, "http://") {
		waitHealthy(t, url)
	}
	return s
}

func (s *server) stop(t *testing.T) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("run returned %v; stderr: %s", err, s.stderr)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("server did not shut down")
		}
	})
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/healthz never answered: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func request(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until the buffer contains want.
func (s *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %q in:\n%s", want, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The whole program: serve, write, watch, shut down with an open stream
// (it gets cancel), restart on the same file and find the write.
func TestServeShutdownAndRestart(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "sigbase.db")
	s := startServer(t, nil, "--data", data)
	if code, body := request(t, "PUT", s.url+"/rooms/r1/offer", `{"type":"offer"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	stream := openStream(t, s.url+"/rooms/r1")
	stream.waitFor(t, `"data":{"offer":{"type":"offer"}}`)

	start := time.Now()
	s.stop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown with an open stream took %v", d)
	}
	stream.waitFor(t, "event: cancel\ndata: \"server shutting down\"")

	s = startServer(t, nil, "--data", data)
	if code, body := request(t, "GET", s.url+"/rooms/r1/offer", ""); code != 200 || body != `{"type":"offer"}` {
		t.Fatalf("after restart: %d %s", code, body)
	}
}

func TestFlagsEnvironmentAndDefaults(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SIGBASE_ROOM_TTL": "5m", "SIGBASE_MAX_BODY": "1MiB", "SIGBASE_CORS_ORIGINS": "https://a,https://b", "SIGBASE_KEEPALIVE": "3s"}
	c, err := parseServeFlags([]string{"--room-ttl", "7m"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.store.RoomTTL != 7*time.Minute {
		t.Errorf("room TTL %v: the flag must win over SIGBASE_ROOM_TTL", c.store.RoomTTL)
	}
	if c.store.Limits.MaxValueBytes != 1<<20 {
		t.Errorf("max body %d: want SIGBASE_MAX_BODY=1MiB", c.store.Limits.MaxValueBytes)
	}
	if strings.Join(c.api.CORSOrigins, " ") != "https://a https://b" || c.api.KeepAlive != 3*time.Second {
		t.Errorf("origins %v keepalive %v", c.api.CORSOrigins, c.api.KeepAlive)
	}
	d, err := parseServeFlags(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d.addr != "127.0.0.1:8080" || d.data != "sigbase.db" || d.store.RoomTTL != time.Hour || d.api.CORSOrigins[0] != "*" {
		t.Errorf("defaults: %+v", d)
	}
	if _, err := parseServeFlags([]string{"--max-body", "lots"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("--max-body lots was accepted")
	}
	if _, err := parseServeFlags(nil, func(k string) string { return map[string]string{"SIGBASE_ROOM_TTL": "soon"}[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "SIGBASE_ROOM_TTL") {
		t.Errorf("a bad SIGBASE_ROOM_TTL: %v", err)
	}
}

func TestLockedDatabaseFailsClearly(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "sigbase.db")
	startServer(t, nil, "--data", data)
	start := time.Now()
	err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--data", data}, func(k string) string {
		return map[string]string{"SIGBASE_OPEN_TIMEOUT": "300ms"}[k]
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second server on one file: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("failing took %v", d)
	}
}

// sigbase watch prints events one a line and resumes across a server
// restart: the network errors while it is down are retried.
func TestWatchCommandResumesAcrossRestart(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "sigbase.db")
	s := startServer(t, nil, "--data", data)
	addr := strings.TrimPrefix(s.url, "http://")
	w := startWatch(t, s.url+"/rooms/r1")
	w.out.waitFor(t, " id=0 put / null\n")
	request(t, "PUT", s.url+"/rooms/r1/offer", `{"sdp":"x"}`)
	w.out.waitFor(t, " id=1 put /offer {\"sdp\":\"x\"}\n")

	s.stop(t)
	w.log.waitFor(t, `cancel "server shutting down"`)
	w.log.waitFor(t, "connection refused")
	s2 := startServer(t, nil, "--data", data, "--addr", addr)
	request(t, "PUT", s2.url+"/rooms/r1/answer", `"a"`)
	w.out.waitFor(t, " id=2 put /answer \"a\"\n")
	if strings.Count(w.out.String(), "put /offer") != 1 {
		t.Errorf("the offer was printed more than once:\n%s", w.out)
	}
	select {
	case err := <-w.done:
		t.Fatalf("watch returned %v", err)
	default:
	}
}

func TestHealthAndVersionCommands(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"))
	var out bytes.Buffer
	if err := run(context.Background(), []string{"health", s.url}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatalf("health: %v", err)
	}
	err := run(context.Background(), []string{"health", "--timeout", "1s", "http://127.0.0.1:1"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("health of nothing succeeded")
	}
	out.Reset()
	if err := run(context.Background(), []string{"version"}, nil, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "sigbase ") {
		t.Fatalf("version: %q %v", out.String(), err)
	}
	if err := run(context.Background(), []string{"frobnicate"}, nil, io.Discard, io.Discard); err == nil {
		t.Fatal("an unknown command succeeded")
	}
}

// sigbase token mints what sigbase serve accepts, with the secret from the
// environment or a file.
func TestTokenCommandAndAuth(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("a-long-enough-test-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SIGBASE_AUTH_SECRET_FILE": secretFile}
	s := startServer(t, env, "--data", filepath.Join(t.TempDir(), "db"))
	var tok bytes.Buffer
	if err := run(context.Background(), []string{"token", "--room", "r1", "--perm", "read,write", "--ttl", "1m"},
		func(k string) string { return env[k] }, &tok, io.Discard); err != nil {
		t.Fatal(err)
	}
	if code, _ := request(t, "PUT", s.url+"/rooms/r1/k", "1"); code != 401 {
		t.Fatalf("write without a token: %d", code)
	}
	if code, body := request(t, "PUT", s.url+"/rooms/r1/k?auth="+strings.TrimSpace(tok.String()), "1"); code != 200 {
		t.Fatalf("write with a minted token: %d %s", code, body)
	}
	if code, _ := request(t, "PUT", s.url+"/rooms/r2/k?auth="+strings.TrimSpace(tok.String()), "1"); code != 403 {
		t.Fatalf("write to another room: %d", code)
	}
	if err := run(context.Background(), []string{"token", "--room", "r1"}, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
		t.Fatal("token without a secret succeeded")
	}
	if err := run(context.Background(), []string{"serve", "--auth-secret", "short"}, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
		t.Fatal("serve with a 5-byte secret started")
	}
}

func TestWildcardListenerShowsAnOpenableURL(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"), "--addr", "0.0.0.0:0")
	if !strings.HasPrefix(s.url, "http://127.0.0.1:") {
		t.Fatalf("listening line shows %s", s.url)
	}
}

// openStream watches url and copies the raw stream into a buffer until the
// test ends. It returns once the first event, the room's snapshot, is there.
func openStream(t *testing.T, url string) *syncBuffer {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	stream := &syncBuffer{}
	go io.Copy(stream, res.Body)
	// The headers come before the snapshot is read; a write made before
	// the first put could land in the snapshot instead of an event of its own.
	stream.waitFor(t, "event: put\n")
	return stream
}
