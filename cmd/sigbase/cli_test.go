package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func noEnv(string) string { return "" }

// Help is an answer, not a failure: every form lists the commands and
// exits 0, also through main (the built binary).
func TestHelpAndVersionExitZero(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, noEnv, &out, io.Discard); err != nil {
			t.Errorf("sigbase %v: %v", args, err)
		}
		for _, cmd := range []string{"serve", "watch", "token", "health", "version"} {
			if !strings.Contains(out.String(), "\n  "+cmd+" ") {
				t.Errorf("sigbase %v does not list %s:\n%s", args, cmd, out.String())
			}
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, noEnv, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "sigbase ") {
			t.Errorf("sigbase %v: %q %v", args, out.String(), err)
		}
	}
	for _, cmd := range []string{"serve", "token", "watch", "health"} {
		var usage bytes.Buffer
		if err := run(context.Background(), []string{cmd, "-h"}, noEnv, io.Discard, &usage); err != nil {
			t.Errorf("sigbase %s -h: %v", cmd, err)
		}
		if !strings.Contains(usage.String(), "\n  -") {
			t.Errorf("sigbase %s -h printed no flags: %q", cmd, usage.String())
		}
	}

	bin := sigbaseBinary(t)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0}, {[]string{"serve", "-h"}, 0}, {[]string{"token", "--help"}, 0},
		{[]string{"--version"}, 0}, {[]string{"frobnicate"}, 1}, {[]string{"serve", "--no-such-flag"}, 1},
	} {
		err := exec.Command(bin, c.args...).Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code {
			t.Errorf("sigbase %v exited %d, want %d", c.args, code, c.code)
		}
	}
}

// runWatch runs `sigbase watch` until it returns or the test ends.
type watchRun struct {
	out, log *syncBuffer
	done     chan error
	cancel   context.CancelFunc
}

func startWatch(t *testing.T, args ...string) *watchRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	w := &watchRun{out: &syncBuffer{}, log: &syncBuffer{}, done: make(chan error, 1), cancel: cancel}
	go func() { w.done <- run(ctx, append([]string{"watch"}, args...), noEnv, w.out, w.log) }()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

func (w *watchRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("watch did not stop; stderr:\n%s", w.log)
		return nil
	}
}

// errorOf is the server's own message for a watch of url.
func errorOf(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct{ Error string }
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Error == "" {
		t.Fatalf("GET %s: %d without an error body (%v)", url, res.StatusCode, err)
	}
	return res.StatusCode, body.Error
}

// 400, 401, 403 and 404 cannot change by retrying: watch stops at once
// with the server's message and an error (exit 1).
func TestWatchStopsOnPermanentErrors(t *testing.T) {
	t.Parallel()
	open := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"))
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("a-long-enough-test-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SIGBASE_AUTH_SECRET_FILE": secretFile}
	authed := startServer(t, env, "--data", filepath.Join(t.TempDir(), "db"))
	var tok bytes.Buffer
	if err := run(context.Background(), []string{"token", "--room", "r2"}, func(k string) string { return env[k] }, &tok, io.Discard); err != nil {
		t.Fatal(err)
	}
	other := strings.TrimSpace(tok.String())

	for _, c := range []struct {
		status     int
		url, token string
	}{
		{400, open.url + "/rooms/r1/a/b/c", ""},
		{404, open.url + "/no-such-thing", ""},
		{401, authed.url + "/rooms/r1", ""},
		{403, authed.url + "/rooms/r1", other},
	} {
		status, msg := errorOf(t, c.url, c.token)
		if status != c.status {
			t.Fatalf("GET %s: %d, want %d", c.url, status, c.status)
		}
		w := startWatch(t, "--token", c.token, c.url)
		err := w.wait(t)
		if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), http.StatusText(c.status)) {
			t.Errorf("watch on a %d: %v; want the server's %q", c.status, err, msg)
		}
		if strings.Contains(w.log.String(), "reconnecting") {
			t.Errorf("watch on a %d retried:\n%s", c.status, w.log)
		}
	}

	// Neither do a certificate that does not verify and a URL that is none.
	tlsServer := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"), "--tls-self-signed")
	for _, c := range []struct{ url, want string }{
		{tlsServer.url + "/rooms/r1", "certificate"},
		{"ftp://127.0.0.1/rooms/r1", "want an http:// or https:// URL"},
	} {
		w := startWatch(t, c.url)
		if err := w.wait(t); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("watch %s: %v, want %q", c.url, err, c.want)
		}
		if strings.Contains(w.log.String(), "reconnecting") {
			t.Errorf("watch %s retried:\n%s", c.url, w.log)
		}
	}
}

// 429 and 503 pass: watch waits the server's Retry-After (5 s here, where
// its own backoff would start at 250 ms) and connects once a slot is free.
func TestWatchRetriesOverloadAfterRetryAfter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		flag, status string
	}{
		{"--max-streams-per-room", "429 Too Many Requests"},
		{"--max-streams", "503 Service Unavailable"},
	} {
		t.Run(c.flag, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"), c.flag, "1")
			ctx, closeFirst := context.WithCancel(context.Background())
			defer closeFirst()
			req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/rooms/r1", nil)
			req.Header.Set("Accept", "text/event-stream")
			res, err := http.DefaultClient.Do(req)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("first stream: %v %v", res, err)
			}
			defer res.Body.Close()
			_, msg := errorOf(t, s.url+"/rooms/r1", "")

			w := startWatch(t, s.url+"/rooms/r1")
			w.log.waitFor(t, "reconnecting in 5s: watch "+s.url+"/rooms/r1: "+c.status+": "+msg)
			if w.out.String() != "" {
				t.Fatalf("printed events while refused: %s", w.out)
			}
			closeFirst()
			w.out.waitFor(t, "id=0 put / null")
		})
	}
}

func TestWatchRawPrintsTheStream(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"))
	w := startWatch(t, "--raw", strings.TrimPrefix(s.url, "http://")+"/rooms/r1") // host:port/path will do
	w.out.waitFor(t, "retry: 1000\nevent: keep-alive\ndata: {\"interval\":15000}\n\nid: 0\nevent: put\ndata: {\"path\":\"/\",\"data\":null}\n\n")
	request(t, "PATCH", s.url+"/rooms/r1", `{"a":1,"b/c":"x"}`)
	w.out.waitFor(t, "id: 1\nevent: patch\ndata: {\"path\":\"/\",\"data\":{\"a\":1,\"b/c\":\"x\"}}\n\n")
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0}, {"soon", 0}, {"-3", 0}, {"0", 0}, {"5", 5 * time.Second},
		{"86400", 5 * time.Minute}, {time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(c.header); got != c.want {
			t.Errorf("Retry-After %q: %v, want %v", c.header, got, c.want)
		}
	}
	if got := retryAfter(time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)); got < 58*time.Second || got > time.Minute {
		t.Errorf("Retry-After a minute from now: %v", got)
	}
}

// health takes what --addr and SIGBASE_ADDR take, not only URLs.
func TestHealthTakesAnAddress(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"))
	hostPort := strings.TrimPrefix(s.url, "http://")
	_, port, _ := strings.Cut(hostPort, ":")
	for _, arg := range []string{s.url, s.url + "/", hostPort, ":" + port} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"health", arg}, noEnv, &out, io.Discard); err != nil || out.Len() == 0 {
			t.Errorf("health %s: %v %q", arg, err, out.String())
		}
	}
	env := func(k string) string { return map[string]string{"SIGBASE_ADDR": hostPort}[k] }
	if err := run(context.Background(), []string{"health"}, env, io.Discard, io.Discard); err != nil {
		t.Errorf("health with SIGBASE_ADDR=%s: %v", hostPort, err)
	}
}

// token refuses a room the server would refuse, with the server's rule.
func TestTokenValidatesTheRoom(t *testing.T) {
	t.Parallel()
	env := func(k string) string { return map[string]string{"SIGBASE_AUTH_SECRET": "a-long-enough-test-secret"}[k] }
	for _, c := range []struct {
		room string
		ok   bool
	}{
		{"r1", true}, {"*", true}, {"A-b_9", true}, {strings.Repeat("r", 128), true},
		{strings.Repeat("r", 129), false}, {"a b", false}, {"r/1", false}, {"é", false}, {"**", false},
	} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"token", "--room", c.room}, env, &out, io.Discard)
		if c.ok && (err != nil || out.Len() == 0) {
			t.Errorf("token --room %q: %v", c.room, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "room name")) {
			t.Errorf("token --room %q: %v, want the room name rule", c.room, err)
		}
	}
}
