//go:build linux

package main

// Streams through nginx and Caddy across a restart of sigbase. While sigbase
// is down the proxy cannot reach it; a spec-following EventSource (browsers,
// the npm eventsource package) closes for good on any error status or
// Content-Type, so the shipped configurations answer stream requests with a
// dropped connection, which makes it reconnect with Last-Event-ID.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// docs/deploy/nginx.conf: an EventSource watching a room through nginx
// keeps reconnecting while sigbase is down for 3 s, and after the restart
// gets every change exactly once, in order.
func TestNginxStreamsSurviveUpstreamRestart(t *testing.T) {
	bin := pxTool(t, "nginx", "/usr/sbin/nginx")
	node, script := pxEventSourceScript(t)
	t.Parallel()
	pxSurviveRestart(t, node, script, func(upstream string) pxProxy { return pxNginx(t, bin, upstream, "90s") })
}

// The same through docs/deploy/Caddyfile.
func TestCaddyStreamsSurviveUpstreamRestart(t *testing.T) {
	bin := pxTool(t, "caddy", "/usr/bin/caddy")
	node, script := pxEventSourceScript(t)
	t.Parallel()
	pxSurviveRestart(t, node, script, func(upstream string) pxProxy { return pxCaddy(t, bin, upstream, "90s") })
}

func pxSurviveRestart(t *testing.T, node, script string, proxy func(upstream string) pxProxy) {
	data := filepath.Join(t.TempDir(), "sigbase.db")
	args := []string{"--data", data, "--rate-limit", "0"}
	sb := startProcess(t, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	addr := strings.TrimPrefix(sb.url, "http://")
	px := proxy(sb.url)
	c := pxClient(t, px.roots, "")
	es := pxEventSource(t, node, script, px, px.url+"/rooms/outage")
	es.waitFor(t, 10*time.Second, "the snapshot", func(l []esLine) bool { return len(es.changes(l)) == 1 })

	const n = 5
	put := func(i int) {
		t.Helper()
		key := fmt.Sprintf("k%d", i)
		if res, b := pxDo(t, c, "PUT", px.url+"/rooms/outage/"+key, fmt.Sprintf(`"v%d"`, i)); res.StatusCode != 200 {
			t.Fatalf("PUT %s: %d %s", key, res.StatusCode, b)
		}
	}
	for i := range n {
		put(i)
	}
	es.waitFor(t, 5*time.Second, "the changes before the outage", func(l []esLine) bool { return len(es.changes(l)) == 1+n })

	// Down for 3 s. The client's stream ends and it retries every second
	// (sigbase's retry: 1000); each attempt reaches the proxy, which cannot
	// reach sigbase.
	sb.kill()
	down := time.Now()
	before := len(es.lines())

	// Meanwhile an ordinary request gets a JSON error...
	res, body := pxDo(t, c, "GET", px.url+"/rooms/outage", "", "Origin", "https://app.example")
	if res.StatusCode != 502 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") ||
		res.Header.Get("Access-Control-Allow-Origin") == "" || !json.Valid(body) || !strings.HasPrefix(string(body), `{"error":`) {
		t.Errorf("GET while sigbase is down: %d %q, Content-Type %q, Access-Control-Allow-Origin %q; want 502 with a JSON error a page can read",
			res.StatusCode, body, res.Header.Get("Content-Type"), res.Header.Get("Access-Control-Allow-Origin"))
	}
	// ...and a stream request over HTTP/2 gets no response at all (a reset
	// stream), as the EventSource's requests over HTTP/1.1 do (a closed
	// connection): an error status would end a browser's EventSource. Go's
	// HTTP/2 client retries a GET on a reset stream, in a loop, unless the
	// request has a body it cannot send again: hence the empty one.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", px.url+"/rooms/outage", onceBody{strings.NewReader("")})
	req.Header.Set("Accept", "text/event-stream")
	if res, err := c.Do(req); err == nil {
		res.Body.Close()
		t.Errorf("stream request while sigbase is down: %s %s, Content-Type %q; want no response (a dropped connection)",
			res.Proto, res.Status, res.Header.Get("Content-Type"))
	} else {
		t.Logf("stream request over HTTP/2 while sigbase is down: %v", err)
	}
	cancel()

	time.Sleep(time.Until(down.Add(3 * time.Second)))
	errs, at := 0, []string{}
	for _, l := range es.lines()[before:] {
		if l.Kind == "error" {
			errs++
			at = append(at, fmt.Sprintf("%dms %s", l.Ms, l.Message))
		}
	}
	t.Logf("EventSource errors while sigbase was down: %q", at)
	// One error when the stream ends, one more per failed reconnect.
	if errs < 2 {
		t.Errorf("%d EventSource errors while sigbase was down for 3 s; want the end of the stream and at least one failed reconnect:\n%s", errs, es.p.out)
	}
	if closed := es.closed(); closed != nil {
		t.Fatalf("the EventSource closed for good while sigbase was down (%s, HTTP %v): the proxy answered with an error status instead of dropping the connection",
			closed.Message, closed.Code)
	}

	startProcess(t, append([]string{"--addr", addr}, args...)...) // same address and data: the proxy finds it
	for i := n; i < 2*n; i++ {
		put(i)
	}
	es.waitFor(t, 15*time.Second, "the changes after the restart", func(l []esLine) bool { return len(es.changes(l)) >= 1+2*n })
	time.Sleep(500 * time.Millisecond) // for any duplicate

	got := es.changes(es.lines())
	var last uint64
	for i, ev := range got {
		var msg struct {
			Path string          `json:"path"`
			Data json.RawMessage `json:"data"`
		}
		id, err := strconv.ParseUint(ev.ID, 10, 64)
		if err != nil || json.Unmarshal([]byte(ev.Data), &msg) != nil {
			t.Fatalf("event %d: id %q data %q", i, ev.ID, ev.Data)
		}
		want := "/" // the snapshot, then k0, k1, ... once each
		if i > 0 {
			want = fmt.Sprintf("/k%d", i-1)
		}
		if ev.Event != "put" || msg.Path != want || (i > 0 && string(msg.Data) != fmt.Sprintf(`"v%d"`, i-1)) || (i > 0 && id <= last) {
			t.Fatalf("event %d: %s id %s %s after id %d; want put %s with a higher id (every change once, in order). All events:\n%s",
				i, ev.Event, ev.ID, ev.Data, last, want, es.p.out)
		}
		last = id
	}
	if len(got) != 1+2*n {
		t.Fatalf("%d events; want the snapshot and %d changes, each once:\n%s", len(got), 2*n, es.p.out)
	}
	if closed := es.closed(); closed != nil {
		t.Fatalf("the EventSource closed for good (%s, HTTP %v)", closed.Message, closed.Code)
	}
	t.Logf("%d changes around a 3 s outage arrived once each, in order; the EventSource saw %d errors while sigbase was down", 2*n, errs)
}

// onceBody is a request body without GetBody: a request that cannot be
// retried.
type onceBody struct{ io.Reader }

func (onceBody) Close() error { return nil }

// esLine is one line that client-js/test/lib/eventsource-log.js prints.
type esLine struct {
	Kind       string `json:"kind"` // open, event or error
	Event      string `json:"event"`
	ID         string `json:"id"`
	Data       string `json:"data"`
	Message    string `json:"message"`
	Code       any    `json:"code"`
	ReadyState int    `json:"readyState"` // 0 connecting, 1 open, 2 closed for good
	Ms         int    `json:"ms"`         // when, since the script started
}

// pxES is a running eventsource-log.js.
type pxES struct{ p *pxProc }

// pxEventSource follows url with the npm eventsource package, trusting the
// proxy's certificate.
func pxEventSource(t *testing.T, node, script string, px pxProxy, url string) *pxES {
	t.Helper()
	env := []string{"PATH=" + os.Getenv("PATH"), "NODE_EXTRA_CA_CERTS=" + px.ca}
	return &pxES{pxStart(t, "eventsource", env, node, script, url, "60")}
}

// lines parses what the script printed so far (anything else it printed,
// such as a stack trace, stays in p.out for messages).
func (e *pxES) lines() []esLine {
	var out []esLine
	for _, s := range strings.Split(e.p.out.String(), "\n") {
		var l esLine
		if strings.HasPrefix(s, "{") && json.Unmarshal([]byte(s), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// changes are the put and patch events among lines (also cancel and
// others, which this test never expects).
func (e *pxES) changes(lines []esLine) []esLine {
	var out []esLine
	for _, l := range lines {
		if l.Kind == "event" {
			out = append(out, l)
		}
	}
	return out
}

// closed returns the error that closed the EventSource for good, if any.
func (e *pxES) closed() *esLine {
	for _, l := range e.lines() {
		if l.Kind == "error" && l.ReadyState == 2 {
			return &l
		}
	}
	return nil
}

// waitFor polls until ok holds for the lines printed so far, within d.
func (e *pxES) waitFor(t *testing.T, d time.Duration, what string, ok func([]esLine) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok(e.lines()) {
		if closed := e.closed(); closed != nil {
			t.Fatalf("waiting for %s: the EventSource closed for good (%s, HTTP %v):\n%s", what, closed.Message, closed.Code, e.p.out)
		}
		if e.p.exited() || time.Now().After(deadline) {
			t.Fatalf("no %s within %v (exited: %v):\n%s", what, d, e.p.exited(), e.p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var npmOnce sync.Once

// pxEventSourceScript finds node and client-js/test/lib/eventsource-log.js
// with the eventsource package installed. Under SIGBASE_FULL_TESTS=1 (CI,
// where go test runs before client-js's npm ci) it installs client-js's
// devDependencies itself; elsewhere it skips without them.
func pxEventSourceScript(t *testing.T) (node, script string) {
	t.Helper()
	full := os.Getenv("SIGBASE_FULL_TESTS") == "1"
	node, err := exec.LookPath("node")
	if err != nil {
		requireFull(t, false, "node (apt-get install nodejs npm)")
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "client-js"))
	if err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, "node_modules", "eventsource", "package.json")
	if _, err := os.Stat(pkg); err != nil && full {
		npmOnce.Do(func() {
			cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("npm ci in client-js: %v\n%s", err, out)
			}
		})
	}
	if _, err := os.Stat(pkg); err != nil {
		requireFull(t, false, "the npm eventsource package (cd client-js && npm ci)")
	}
	return node, filepath.Join(dir, "test", "lib", "eventsource-log.js")
}
