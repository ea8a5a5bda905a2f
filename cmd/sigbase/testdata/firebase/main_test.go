// Package firebasetest runs the official Firebase Admin SDK for Go (its db
// package, which speaks the Realtime Database REST wire) against the real
// sigbase binary. It is a module of its own so that the SDK and its
// dependencies stay out of sigbase's go.mod; `testdata` keeps it out of the
// main module's `go test ./...`. Run it with
//
//	cd cmd/sigbase/testdata/firebase && go test -count=1 ./...
package firebasetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/db"
	"google.golang.org/api/option"
)

// binary is the sigbase binary TestMain builds from the repository.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sigbase-firebasetest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// This directory is cmd/sigbase/testdata/firebase: the repository root
	// is four levels up.
	root, err := filepath.Abs(filepath.Join("..", "..", "..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binary = filepath.Join(dir, "sigbase")
	build := exec.Command("go", "build", "-o", binary, "./cmd/sigbase")
	build.Dir = root
	// GOFLAGS given to this module (such as -mod=mod) are not sigbase's.
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/sigbase in %s: %v\n%s", root, err, out)
		return 1
	}
	return m.Run()
}

// server is one running sigbase process.
type server struct {
	addr string // 127.0.0.1:port
	// dbURL is the database URL the Admin SDK takes: a URL that is not
	// https is the emulator form, host:port[/path]?ns=name without a
	// scheme (the SDK refuses one with "//" and adds http:// itself). The
	// host must be a name (an IP literal does not parse without a scheme),
	// and the path /rooms makes ref paths room/key/child.
	dbURL string
}

// startServer runs `sigbase serve` on a free loopback port with its data in
// a temporary directory, and waits until /healthz answers.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	data := filepath.Join(t.TempDir(), "sigbase.db")
	args = append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--rate-limit", "0", "--log-level", "warn"}, args...)
	cmd := exec.Command(binary, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("sigbase stderr:\n%s", stderr.String())
		}
	})
	// The server prints "listening on http://127.0.0.1:PORT" first.
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(20 * time.Second):
		t.Fatalf("sigbase printed no address; stderr:\n%s", stderr.String())
	}
	scheme, addr, ok := strings.Cut(strings.TrimPrefix(line, "listening on "), "://")
	if !ok {
		t.Fatalf("sigbase said %q; stderr:\n%s", line, stderr.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := insecure.Get(scheme + "://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz did not answer 200: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, port, _ := strings.Cut(addr, ":")
	if scheme == "https" {
		// An https URL is the production form: the SDK uses it as is.
		return &server{addr: addr, dbURL: "https://" + addr + "/rooms"}
	}
	return &server{addr: addr, dbURL: "localhost:" + port + "/rooms?ns=sigbase"}
}

// insecure is an HTTP client that trusts --tls-self-signed certificates.
var insecure = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// client is a database client of the Admin SDK whose HTTP traffic goes
// through a recorder; token, when set, is sent as a bearer token.
func (s *server) client(t *testing.T, token string) *db.Client {
	t.Helper()
	return s.recordedClient(t, token, s.config())
}

// recordedClient is client with the given app configuration.
func (s *server) recordedClient(t *testing.T, token string, cfg *firebase.Config) *db.Client {
	t.Helper()
	rec := &recorder{base: insecure.Transport, token: token}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("HTTP exchanges of %s:\n%s", t.Name(), rec.String())
		}
	})
	return s.clientConfig(t, cfg, option.WithHTTPClient(&http.Client{Transport: rec, Timeout: 30 * time.Second}))
}

// config is the app's configuration for this server.
func (s *server) config() *firebase.Config {
	// A ProjectID keeps the SDK from looking for Google credentials.
	return &firebase.Config{DatabaseURL: s.dbURL, ProjectID: "sigbase"}
}

// clientWith is a database client made with the given options only.
func (s *server) clientWith(t *testing.T, opts ...option.ClientOption) *db.Client {
	t.Helper()
	return s.clientConfig(t, s.config(), opts...)
}

func (s *server) clientConfig(t *testing.T, cfg *firebase.Config, opts ...option.ClientOption) *db.Client {
	t.Helper()
	ctx := context.Background()
	app, err := firebase.NewApp(ctx, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := app.Database(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mintToken runs `sigbase token` with the given secret file.
func mintToken(t *testing.T, secretFile string, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"token", "--auth-secret-file", secretFile}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("sigbase token %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// recorder is the client's transport: it adds the bearer token and keeps
// every exchange, which a failing test prints (the request the SDK sent
// and the answer it got).
type recorder struct {
	base  http.RoundTripper
	token string

	mu  sync.Mutex
	log []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "> %s %s\n", req.Method, req.URL.RequestURI())
	for _, h := range []string{"If-Match", "If-None-Match", "X-Firebase-ETag"} {
		if v := req.Header.Get(h); v != "" {
			fmt.Fprintf(&b, "> %s: %s\n", h, v)
		}
	}
	if len(reqBody) > 0 {
		fmt.Fprintf(&b, "> %s\n", reqBody)
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		fmt.Fprintf(&b, "< error: %v\n", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		fmt.Fprintf(&b, "< %s ETag: %s\n", resp.Status, resp.Header.Get("ETag"))
		if len(body) > 0 {
			fmt.Fprintf(&b, "< %s\n", bytes.TrimSpace(body))
		}
	}
	r.mu.Lock()
	r.log = append(r.log, b.String())
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.log, "")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
