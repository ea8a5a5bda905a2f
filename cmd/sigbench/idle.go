package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// idleConfig is the idle scenario: C watchers that connect, take their
// snapshot and then only hold the connection, and what they cost the
// server in RSS.
type idleConfig struct {
	prefix   string // of the flag names: "" alone, "NAME." under all
	watchers int
	perRoom  int
	headroom int
	settle   time.Duration
	hold     time.Duration
}

func defaultIdle() *idleConfig {
	return &idleConfig{perRoom: 2, headroom: 1000, settle: 2 * time.Second}
}

func (c *idleConfig) register(fs *flag.FlagSet, p string) {
	c.prefix = p
	fs.IntVar(&c.watchers, p+"watchers", c.watchers, "idle watchers (0: sigbench's open-files limit less -headroom)")
	fs.IntVar(&c.perRoom, p+"per-room", c.perRoom, "watchers per room (2: a caller and a callee waiting)")
	fs.IntVar(&c.headroom, p+"headroom", c.headroom, "open files kept free when -watchers is 0")
	fs.DurationVar(&c.settle, p+"settle", c.settle, "wait this long after the last connect before reading the server's RSS")
	fs.DurationVar(&c.hold, p+"hold", c.hold, "then hold the watchers open this much longer")
}

func (c *idleConfig) validate() error {
	if err := checkRange(c.prefix+"watchers", c.watchers, 0, maxCount); err != nil {
		return err
	}
	if err := checkRange(c.prefix+"per-room", c.perRoom, 1, maxCount); err != nil {
		return err
	}
	if err := checkRange(c.prefix+"headroom", c.headroom, 50, 1_000_000); err != nil {
		return err
	}
	if err := checkDuration(c.prefix+"settle", c.settle, 0, 5*time.Minute); err != nil {
		return err
	}
	return checkDuration(c.prefix+"hold", c.hold, 0, maxDuration)
}

func (c *idleConfig) scenario() scenario { return scenario{name: "idle", run: c.run} }

type idleReport struct {
	Scenario       string  `json:"scenario"`
	Target         string  `json:"target"`
	Requested      int     `json:"watchers"`
	Connected      int     `json:"connected"`
	ConnectErrors  counter `json:"connect_errors,omitempty"`
	Rooms          int     `json:"rooms"`
	OpenFilesLimit int     `json:"sigbench_open_files_limit"`
	ConnectSeconds float64 `json:"connect_seconds"`
	ConnectRate    float64 `json:"connects_per_s"`
	ServerPID      int     `json:"server_pid,omitempty"`
	RSSBefore      int64   `json:"server_rss_before_kib,omitempty"`
	RSSAfter       int64   `json:"server_rss_after_kib,omitempty"`
	KiBPerWatcher  float64 `json:"server_kib_per_watcher,omitempty"`
	HeapPer        float64 `json:"server_heap_kib_per_watcher"`  // Go heap in use
	StackPer       float64 `json:"server_stack_kib_per_watcher"` // goroutine stacks
	Goroutines     [2]int  `json:"server_goroutines_before_after"`
	GoroutinesPer  float64 `json:"server_goroutines_per_watcher"`
	ServerWatchers int     `json:"server_watchers_gauge"`
	Dropped        counter `json:"watchers_dropped,omitempty"`
	CPU            *cpuUse `json:"cpu_connect,omitempty"`
	Hint           string  `json:"hint,omitempty"`
}

func (r *idleReport) scenario() string { return r.Scenario }
func (r *idleReport) ok() bool {
	return r.Connected == r.Requested && r.Dropped.total() == 0
}

func (r *idleReport) summary(w io.Writer) {
	fmt.Fprintf(w, "idle: %d watchers on %d rooms of %s (sigbench open-files limit %d)\n", r.Requested, r.Rooms, r.Target, r.OpenFilesLimit)
	fmt.Fprintf(w, "  connected %d in %.2fs (%.0f/s); errors: %s; dropped while held: %s\n",
		r.Connected, r.ConnectSeconds, r.ConnectRate, r.ConnectErrors, r.Dropped)
	if r.ServerPID > 0 {
		fmt.Fprintf(w, "  server pid %d RSS %d → %d KiB: %.1f KiB per watcher\n", r.ServerPID, r.RSSBefore, r.RSSAfter, r.KiBPerWatcher)
	} else {
		fmt.Fprintf(w, "  server RSS unknown: give -server-pid (the server is not a process of this machine that sigbench can see)\n")
	}
	fmt.Fprintf(w, "  server per watcher: Go heap in use %.1f KiB, stacks %.1f KiB; goroutines %d → %d (%.2f per watcher); sigbase_watchers %d\n",
		r.HeapPer, r.StackPer, r.Goroutines[0], r.Goroutines[1], r.GoroutinesPer, r.ServerWatchers)
	fmt.Fprintf(w, "  while connecting: %s\n", r.CPU)
	if r.Hint != "" {
		fmt.Fprintf(w, "  %s\n", r.Hint)
	}
}

func (c *idleConfig) run(ctx context.Context, b *bench) ([]report, error) {
	client := b.restClient(4)
	defer client.CloseIdleConnections()
	if err := b.checkServer(ctx, client); err != nil {
		return nil, err
	}
	n := c.watchers
	if n == 0 {
		n = b.nofile - c.headroom
	}
	if limit := b.nofile - 50; n > limit || n < 1 {
		return nil, fmt.Errorf("idle: %d watchers need more open files than sigbench's limit of %d allows (ulimit -Hn)", n, b.nofile)
	}
	r := &idleReport{Scenario: "idle", Target: b.base.Host, Requested: n, Rooms: (n + c.perRoom - 1) / c.perRoom,
		OpenFilesLimit: b.nofile, ConnectErrors: counter{}, Dropped: counter{}, ServerPID: b.serverPID()}
	r.RSSBefore = c.rss(r.ServerPID)
	before := scrape(ctx, client, b)
	r.Goroutines[0] = int(before["go_goroutines"])

	wctx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	cpu := b.startCPU()
	start := time.Now()
	wg, alive, dropped := c.connect(wctx, b, n, r)
	r.ConnectSeconds = time.Since(start).Seconds()
	r.ConnectRate = rate(r.Connected, time.Since(start))
	r.CPU = cpu.stop()
	r.Hint = streamLimitHint(r.ConnectErrors, n, c.perRoom, b.perIP(n))

	sleep(ctx, c.settle)
	r.RSSAfter = c.rss(r.ServerPID)
	after := scrape(ctx, client, b)
	r.Goroutines[1] = int(after["go_goroutines"])
	r.ServerWatchers = int(after["sigbase_watchers"])
	if r.ServerPID > 0 && r.Connected > 0 {
		r.KiBPerWatcher = float64(int(float64(r.RSSAfter-r.RSSBefore)/float64(r.Connected)*10)) / 10
	}
	if n := float64(r.Connected); n > 0 {
		r.GoroutinesPer = ratio(float64(r.Goroutines[1]-r.Goroutines[0]), n)
		delta := func(name string) float64 { return ratio((after[name]-before[name])/1024, n) }
		r.HeapPer, r.StackPer = delta("go_memstats_heap_inuse_bytes"), delta("go_memstats_stack_inuse_bytes")
	}
	if c.hold > 0 {
		stop := b.progress("idle", func() string { return fmt.Sprintf("holding %d watchers", alive.Load()) })
		sleep(ctx, c.hold)
		stop()
	}
	stopWatchers()
	wg.Wait()
	r.Dropped = dropped
	return []report{r}, ctx.Err()
}

// connect opens n watchers, at most connectConcurrency at a time; each
// reads (discarding) until ctx ends. After the server first refuses a
// stream for a limit, no more are tried.
func (c *idleConfig) connect(ctx context.Context, b *bench, n int, r *idleReport) (*sync.WaitGroup, *atomic.Int64, counter) {
	var mu sync.Mutex
	dropped := counter{}
	var alive, refused atomic.Int64
	stop := b.progress("idle", func() string { return fmt.Sprintf("connected %d/%d watchers", alive.Load(), n) })
	defer stop()
	sem := make(chan struct{}, connectConcurrency)
	var ready, wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil && refused.Load() == 0; i++ {
		sem <- struct{}{}
		ready.Add(1)
		wg.Go(func() {
			path := "/rooms/" + b.room("idle", i/c.perRoom)
			s, err := b.openStream(ctx, path, 512)
			if err == nil {
				_, err = s.snapshot()
			}
			<-sem
			if err != nil {
				if k := errKind(err); k == "HTTP 429" || k == "HTTP 503" {
					refused.Add(1)
				}
				mu.Lock()
				r.ConnectErrors.add(err)
				mu.Unlock()
				ready.Done()
				if s != nil {
					s.close()
				}
				return
			}
			alive.Add(1)
			ready.Done()
			err = discard(s)
			alive.Add(-1)
			s.close()
			if ctx.Err() == nil {
				mu.Lock()
				dropped.add(err)
				mu.Unlock()
			}
		})
	}
	ready.Wait()
	r.Connected = int(alive.Load())
	return &wg, &alive, dropped
}

// discard reads events until the stream ends; a cancel from the server ends it too.
func discard(s *stream) error {
	for {
		ev, err := s.next()
		if err != nil {
			return err
		}
		if ev.name == "cancel" || ev.name == "auth_revoked" {
			return fmt.Errorf("%s %s", ev.name, ev.data)
		}
	}
}

func (c *idleConfig) rss(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	kib, _ := readRSS(pid)
	return kib
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
