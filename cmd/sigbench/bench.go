package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// bench is what every scenario shares: the checked target, the dialer, the
// server's process (when known), output and the run id that names rooms.
type bench struct {
	base   *url.URL
	target netip.AddrPort
	cfg    commonConfig
	dialer *dialer
	stderr io.Writer
	nofile int    // this process's open-files limit, raised to the hard one
	runID  string // names this run's rooms
	pidMu  sync.Mutex
	pid    int // the server's process; 0 when unknown
	pidSet bool
}

func newBench(ctx context.Context, c commonConfig, stderr io.Writer) (*bench, error) {
	u, ap, err := loopbackURL(c.url)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	return &bench{
		base: u, target: ap, cfg: c, stderr: &lockedWriter{w: stderr},
		dialer: newDialer(ap.Addr(), c.sources),
		nofile: raiseNoFile(),
		runID:  hex.EncodeToString(id),
		pid:    c.serverPID, pidSet: c.serverPID > 0,
	}, nil
}

func (b *bench) close() {}

// serverPID is the server's process id, found once by its listening port.
func (b *bench) serverPID() int {
	b.pidMu.Lock()
	defer b.pidMu.Unlock()
	if !b.pidSet {
		b.pid, b.pidSet = findListener(b.target.Port()), true
	}
	return b.pid
}

// url is the target URL of a path.
func (b *bench) url(path string) string { return b.base.String() + path }

// room names a room of this run.
func (b *bench) room(kind string, i int) string {
	return fmt.Sprintf("sigbench-%s-%s-%d", b.runID, kind, i)
}

// restClient is an HTTP/1.1 client with keep-alive connections enough for
// conns concurrent requests, so the client is not the bottleneck. It never
// follows redirects and dials loopback only.
func (b *bench) restClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           b.dialer.dial,
			MaxIdleConns:          conns + 16,
			MaxIdleConnsPerHost:   conns + 16,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: b.cfg.timeout,
			DisableCompression:    true,
			ForceAttemptHTTP2:     false,
		},
		Timeout:       b.cfg.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// perIP is how many of n watch streams share one source address.
func (b *bench) perIP(n int) int {
	if k := len(b.dialer.sources); k > 0 {
		return (n + k - 1) / k
	}
	return n
}

// cleanup is the context for removing a run's rooms: it outlives the
// run's deadline by one request timeout.
func (b *bench) cleanup(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), b.cfg.timeout)
}

// checkServer fails early when nothing answers /healthz at the target.
func (b *bench) checkServer(ctx context.Context, client *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url("/healthz"), nil)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("no sigbase at %s: %w", b.base, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/healthz answered %s", b.base, resp.Status)
	}
	return nil
}

// do sends a request and reads the whole answer; a non-2xx status is a
// *statusError.
func do(ctx context.Context, client *http.Client, method, url string, body []byte) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp, nil, err
	}
	if resp.StatusCode/100 != 2 {
		return resp, got, &statusError{code: resp.StatusCode, body: string(got)}
	}
	return resp, got, nil
}

// statusError is an answer other than 2xx.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, strings.TrimSpace(e.body))
}

// errKind names an error briefly, for counting: HTTP statuses and the
// usual network failures by name, the rest by a shortened message.
func errKind(err error) string {
	var se *statusError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("HTTP %d", se.code)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no free local port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files (sigbench)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	msg := err.Error()
	if len(msg) > 60 {
		msg = msg[:60] + "…"
	}
	return msg
}

// add counts an error under its kind, at most 32 kinds.
func (c counter) add(err error) {
	k := errKind(err)
	if _, ok := c[k]; !ok && len(c) >= 32 {
		k = "other"
	}
	c[k]++
}

// cpuMeter measures the CPU the server, sigbench and the whole machine use
// during a phase: what the other two leave tells whether something else
// shared the machine.
type cpuMeter struct {
	pid                   int
	start                 time.Time
	server, self, machine time.Duration
}

func (b *bench) startCPU() *cpuMeter {
	return newCPUMeter(b.serverPID())
}

func newCPUMeter(pid int) *cpuMeter {
	m := &cpuMeter{pid: pid, start: time.Now(), self: selfCPU(), machine: machineBusy()}
	if m.pid > 0 {
		m.server, _ = readCPU(m.pid)
	}
	return m
}

// cpuUse is CPU time as a share of one core over the phase (200 = two
// cores busy).
type cpuUse struct {
	ServerPct  float64 `json:"server_cpu_pct,omitempty"`
	SelfPct    float64 `json:"sigbench_cpu_pct"`
	MachinePct float64 `json:"machine_cpu_pct"`
	OtherPct   float64 `json:"other_cpu_pct"` // neither the server nor sigbench
}

// minCPUPhase is the shortest phase whose CPU use is reported: the
// kernel counts process CPU time in 10 ms ticks.
const minCPUPhase = time.Second

// stop ends the phase; nil when it was too short to measure.
func (m *cpuMeter) stop() *cpuUse {
	wall := time.Since(m.start)
	if wall < minCPUPhase {
		return nil
	}
	self := selfCPU() - m.self
	u := &cpuUse{SelfPct: pct(self, wall), MachinePct: pct(machineBusy()-m.machine, wall)}
	var server time.Duration
	if m.pid > 0 {
		if cpu, err := readCPU(m.pid); err == nil {
			server = cpu - m.server
			u.ServerPct = pct(server, wall)
		}
	}
	u.OtherPct = max(0, pct(machineBusy()-m.machine-self-server, wall))
	return u
}

func pct(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return float64(int(float64(cpu)/float64(wall)*1000)) / 10
}

func (u *cpuUse) String() string {
	if u == nil {
		return "CPU: phase too short to measure"
	}
	s := fmt.Sprintf("sigbench %.0f %%, anything else %.0f %%", u.SelfPct, u.OtherPct)
	if u.ServerPct > 0 {
		s = fmt.Sprintf("server %.0f %%, ", u.ServerPct) + s
	}
	return "CPU (100 % = one core): " + s
}

// progress prints a line to stderr every interval until stopped; the line
// is built by the caller from its own counters.
func (b *bench) progress(name string, line func() string) (stop func()) {
	if b.cfg.progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(b.cfg.progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(b.stderr, "%s %5.1fs  %s\n", name, time.Since(start).Seconds(), line())
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// lockedWriter serializes writes to stderr from concurrent phases.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
