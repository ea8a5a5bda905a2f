package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/cenkalti/backoff.v1"
)

// watchCmd prints every event of a location and keeps resuming with
// Last-Event-ID across disconnects, server cancels and restarts. It stops
// on an answer that retrying cannot change (a bad path, a refused token).
func watchCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sigbase watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sigbase watch [flags] URL (e.g. http://127.0.0.1:8080/rooms/r1)")
		fs.PrintDefaults()
	}
	token := fs.String("token", "", "access token (when auth is on)")
	raw := fs.Bool("raw", false, "print the event stream as the server sends it")
	if err := envFallback(fs, args, getenv); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("watch: want one URL")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	url := withScheme(fs.Arg(0))
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return fmt.Errorf("watch %s: want an http:// or https:// URL", url)
	}
	w := &watcher{url: url, token: *token, raw: *raw, out: stdout, log: stderr, retry: time.Second, client: streamClient()}
	return w.run(ctx)
}

// watcher is one `sigbase watch`: where it is and what it last saw.
type watcher struct {
	url, token string
	raw        bool
	out, log   io.Writer
	lastID     string        // sent as Last-Event-ID on every reconnect
	retry      time.Duration // the server's retry: hint, for a stream that ended cleanly
	client     *http.Client
}

// streamClient speaks HTTP/1.1 only. A stream needs nothing of HTTP/2, and
// Go's HTTP/2 client retries a stream that a proxy resets (nginx's 444
// while sigbase is down) at once and without end, where a dropped HTTP/1.1
// connection is an error this watcher backs off from.
func streamClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return &http.Client{Transport: t}
}

// retryable is a refusal that may pass: 429 or 5xx, with the server's
// Retry-After when it sent one.
type retryable struct {
	err   error
	after time.Duration
}

func (r *retryable) Error() string { return r.err.Error() }

func (w *watcher) run(ctx context.Context) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 250*time.Millisecond, 10*time.Second, 0
	for {
		connected, err := w.stream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			b.Reset()
		}
		var delay time.Duration
		var r *retryable
		var p *permanent
		switch {
		case err == nil: // the server ended the stream (cancel, shutdown)
			delay, err = w.retry, errors.New("stream ended")
		case errors.As(err, &r):
			delay = r.after
			if delay == 0 {
				delay = b.NextBackOff()
			}
		case errors.As(err, &p):
			return p.err
		default: // the network
			delay = b.NextBackOff()
		}
		fmt.Fprintf(w.log, "%s reconnecting in %s: %v\n", time.Now().Format(time.TimeOnly), delay.Round(time.Millisecond), err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// permanent is an answer that retrying cannot change: the watch stops.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }

// stream makes one request and prints its events until it ends. connected
// reports whether the server accepted the watch.
func (w *watcher) stream(ctx context.Context) (connected bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return false, &permanent{fmt.Errorf("watch: %w", err)}
	}
	req.Header.Set("Accept", "text/event-stream")
	if w.token != "" {
		req.Header.Set("Authorization", "Bearer "+w.token)
	}
	if w.lastID != "" {
		req.Header.Set("Last-Event-ID", w.lastID)
	}
	res, err := w.client.Do(req)
	var badCert *tls.CertificateVerificationError
	if errors.As(err, &badCert) {
		return false, &permanent{err} // the same certificate comes back
	}
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		err := fmt.Errorf("watch %s: %s: %s", w.url, res.Status, serverMessage(body))
		if res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 {
			return false, &retryable{err: err, after: retryAfter(res.Header.Get("Retry-After"))}
		}
		return false, &permanent{err}
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, &permanent{fmt.Errorf("watch %s: not an event stream (Content-Type %q): is it a sigbase location?", w.url, ct)}
	}
	return true, w.read(res.Body)
}

// read parses the stream (the SSE format: field lines, a blank line ends an
// event) and prints each event.
func (w *watcher) read(body io.Reader) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 64<<20) // a snapshot is a whole room on one line
	var id, name string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if w.raw {
			fmt.Fprintln(w.out, line)
		}
		if line == "" {
			if name != "" || len(data) > 0 {
				w.print(id, name, strings.Join(data, "\n"))
			}
			name, data = "", nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id, w.lastID = value, value
		case "event":
			name = value
		case "data":
			data = append(data, value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				w.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return sc.Err()
}

// print writes one event on one line: time, id, type, path and value.
// Keep-alives are left out; cancel and auth_revoked go to the log.
func (w *watcher) print(id, name, data string) {
	if w.raw || name == "keep-alive" {
		return
	}
	now := time.Now().Format("15:04:05.000")
	var msg struct {
		Path string          `json:"path"`
		Data json.RawMessage `json:"data"`
	}
	if (name == "put" || name == "patch") && json.Unmarshal([]byte(data), &msg) == nil {
		var value bytes.Buffer
		if json.Compact(&value, msg.Data) != nil {
			value.Write(msg.Data)
		}
		fmt.Fprintf(w.out, "%s id=%s %s %s %s\n", now, id, name, msg.Path, value.String())
		return
	}
	fmt.Fprintf(w.log, "%s %s %s\n", now, name, data)
}

// serverMessage is the text of a {"error": "..."} body, or the body itself.
func serverMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return s
	}
	return "(no message)"
}

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when
// absent or unreadable. Capped so a wrong header cannot park the watch.
func retryAfter(h string) time.Duration {
	var d time.Duration
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), 5*time.Minute)
}

// healthCmd exits 0 when the server answers /healthz: a container health
// check that needs no curl.
func healthCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sigbase health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sigbase health [flags] [URL or host:port] (default: SIGBASE_ADDR, else 127.0.0.1:8080)")
		fs.PrintDefaults()
	}
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := "127.0.0.1:8080"
	if addr := getenv("SIGBASE_ADDR"); addr != "" {
		base = addr
	}
	if fs.NArg() > 0 {
		base = fs.Arg(0)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(base)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s: %s", res.Status, serverMessage(body))
	}
	fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(body))
	return nil
}

// baseURL makes a URL of a URL or a listen address (host:port, :port).
func baseURL(s string) string { return strings.TrimSuffix(withScheme(s), "/") }

// withScheme reads an address without a scheme (host:port[/path], :port)
// as the http:// URL that --addr would serve.
func withScheme(s string) string {
	if strings.Contains(s, "://") {
		return s
	}
	if strings.HasPrefix(s, ":") {
		s = "127.0.0.1" + s
	}
	return "http://" + s
}
