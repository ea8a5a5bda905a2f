package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// connectConcurrency bounds the watch connections being opened at once.
const connectConcurrency = 100

// fanoutConfig is the fanout scenario: S watchers on one room, M writes to
// it at a fixed rate; each write carries its send time, each watcher
// measures when it saw it.
type fanoutConfig struct {
	prefix   string // of the flag names: "" alone, "NAME." under all
	watchers int
	writes   int
	rate     float64
	size     int
	drain    time.Duration
}

func defaultFanout() *fanoutConfig {
	return &fanoutConfig{watchers: 1000, writes: 200, rate: 50, size: 128, drain: 5 * time.Second}
}

func (c *fanoutConfig) register(fs *flag.FlagSet, p string) {
	c.prefix = p
	fs.IntVar(&c.watchers, p+"watchers", c.watchers, "watchers on the room (the server needs --max-streams-per-room at least this)")
	fs.IntVar(&c.writes, p+"writes", c.writes, "writes to the room")
	fs.Float64Var(&c.rate, p+"rate", c.rate, "writes per second")
	fs.IntVar(&c.size, p+"size", c.size, "bytes of JSON per write")
	fs.DurationVar(&c.drain, p+"drain", c.drain, "after the last write, wait this long at most for deliveries")
}

func (c *fanoutConfig) validate() error {
	if err := checkRange(c.prefix+"watchers", c.watchers, 1, maxCount); err != nil {
		return err
	}
	if err := checkRange(c.prefix+"writes", c.writes, 1, 1_000_000); err != nil {
		return err
	}
	if c.watchers*c.writes > 20_000_000 {
		return fmt.Errorf("-"+c.prefix+"watchers × -writes: at most 20,000,000 deliveries per run, got %d", c.watchers*c.writes)
	}
	if c.rate <= 0 || c.rate > 100_000 {
		return fmt.Errorf("-"+c.prefix+"rate: want (0, 100000], got %g", c.rate)
	}
	if float64(c.writes)/c.rate > maxDuration.Seconds() {
		return fmt.Errorf("-"+c.prefix+"writes / -rate: at most %s of writing", maxDuration)
	}
	if err := checkRange(c.prefix+"size", c.size, 32, 60<<10); err != nil {
		return err
	}
	return checkDuration(c.prefix+"drain", c.drain, 0, time.Minute)
}

func (c *fanoutConfig) scenario() scenario { return scenario{name: "fanout", run: c.run} }

type fanoutReport struct {
	Scenario      string       `json:"scenario"`
	Target        string       `json:"target"`
	Watchers      int          `json:"watchers"`
	Connected     int          `json:"connected"`
	ConnectErrors counter      `json:"connect_errors,omitempty"`
	Writes        int          `json:"writes"`
	WritesAcked   int          `json:"writes_acked"`
	WriteErrors   counter      `json:"write_errors,omitempty"`
	Rate          float64      `json:"rate_per_s"`
	Seconds       float64      `json:"seconds"`
	Expected      int          `json:"deliveries_expected"`
	Delivered     int          `json:"deliveries"`
	Latency       latency      `json:"delivery_latency"`
	WriteLatency  latency      `json:"write_latency"`
	LostBySeq     int          `json:"lost_by_seq"`
	LostByRev     int          `json:"lost_by_rev"`
	DupBySeq      int          `json:"duplicated_by_seq"`
	DupByRev      int          `json:"duplicated_by_rev"`
	OutOfOrder    int          `json:"out_of_order"`
	Mismatched    int          `json:"rev_seq_mismatch"`
	OtherEvents   int          `json:"unexpected_events"`
	Dropped       counter      `json:"watchers_dropped,omitempty"`
	CPU           *cpuUse      `json:"cpu,omitempty"`
	Commit        *commitStats `json:"server_commits,omitempty"`
	Hint          string       `json:"hint,omitempty"`
}

func (r *fanoutReport) scenario() string { return r.Scenario }

func (r *fanoutReport) ok() bool {
	return r.Connected == r.Watchers && r.WritesAcked == r.Writes && r.Delivered == r.Expected &&
		r.LostBySeq+r.LostByRev+r.DupBySeq+r.DupByRev+r.OutOfOrder+r.Mismatched+r.OtherEvents+r.Dropped.total() == 0
}

func (r *fanoutReport) summary(w io.Writer) {
	fmt.Fprintf(w, "fanout: %d watchers on one room of %s, %d writes at %g/s\n", r.Watchers, r.Target, r.Writes, r.Rate)
	fmt.Fprintf(w, "  connected %d/%d (errors: %s); writes acked %d/%d (errors: %s)\n",
		r.Connected, r.Watchers, r.ConnectErrors, r.WritesAcked, r.Writes, r.WriteErrors)
	fmt.Fprintf(w, "  delivered %d/%d; lost %d by seq, %d by rev; duplicated %d by seq, %d by rev; out of order %d; rev/seq mismatch %d; unexpected events %d; watchers dropped: %s\n",
		r.Delivered, r.Expected, r.LostBySeq, r.LostByRev, r.DupBySeq, r.DupByRev, r.OutOfOrder, r.Mismatched, r.OtherEvents, r.Dropped)
	fmt.Fprintf(w, "  delivery latency (write sent → event read) %s\n", r.Latency)
	fmt.Fprintf(w, "  write latency %s\n", r.WriteLatency)
	fmt.Fprintf(w, "  %s\n", r.CPU)
	if r.Commit != nil {
		fmt.Fprintf(w, "  %s\n", r.Commit)
	}
	if r.Hint != "" {
		fmt.Fprintf(w, "  %s\n", r.Hint)
	}
}

// fanWatcher is one watcher's record of what it received.
type fanWatcher struct {
	events []fanEvent
	other  int    // events neither snapshot, keep-alive nor a write
	ended  string // why the stream ended before the run stopped it
}

type fanEvent struct {
	rev uint64
	seq int32
	lat time.Duration
}

func (c *fanoutConfig) run(ctx context.Context, b *bench) ([]report, error) {
	client := b.restClient(64)
	defer client.CloseIdleConnections()
	if err := b.checkServer(ctx, client); err != nil {
		return nil, err
	}
	room := b.room("fan", 0)
	r := &fanoutReport{Scenario: "fanout", Target: b.base.Host, Watchers: c.watchers, Writes: c.writes, Rate: c.rate,
		ConnectErrors: counter{}, WriteErrors: counter{}, Dropped: counter{}}
	defer func() {
		cctx, cancel := b.cleanup(ctx)
		defer cancel()
		_, _, _ = do(cctx, client, http.MethodDelete, b.url("/rooms/"+room), nil)
	}()

	wctx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	var delivered atomic.Int64
	watchers, wg := c.connect(wctx, b, "/rooms/"+room, r, &delivered)
	if ctx.Err() != nil {
		stopWatchers()
		wg.Wait()
		return []report{r}, ctx.Err()
	}

	before := scrape(ctx, client, b)
	cpu := b.startCPU()
	start := time.Now()
	revs, writeLat := c.write(ctx, b, client, "/rooms/"+room+"/msg", r, &delivered)
	r.Expected = r.Connected * r.WritesAcked
	drainEnd := time.Now().Add(c.drain)
	for delivered.Load() < int64(r.Expected) && time.Now().Before(drainEnd) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	r.Seconds = time.Since(start).Seconds()
	r.CPU = cpu.stop()
	r.Commit = commitDelta(before, scrape(ctx, client, b))
	stopWatchers()
	wg.Wait()
	r.WriteLatency = summarize(writeLat)
	c.tally(r, watchers, revs)
	return []report{r}, ctx.Err()
}

// connect opens the watchers and waits until each has its snapshot; then
// each reads on in its own goroutine until ctx ends.
func (c *fanoutConfig) connect(ctx context.Context, b *bench, path string, r *fanoutReport, delivered *atomic.Int64) ([]*fanWatcher, *sync.WaitGroup) {
	var mu sync.Mutex
	var connected atomic.Int64
	stop := b.progress("fanout", func() string {
		return fmt.Sprintf("connected %d/%d watchers", connected.Load(), c.watchers)
	})
	defer stop()
	sem := make(chan struct{}, connectConcurrency)
	var ready sync.WaitGroup
	var wg sync.WaitGroup
	watchers := make([]*fanWatcher, 0, c.watchers)
	for range c.watchers {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		ready.Add(1)
		wg.Go(func() {
			s, err := b.openStream(ctx, path, 4096)
			if err == nil {
				_, err = s.snapshot()
			}
			<-sem
			if err != nil {
				mu.Lock()
				r.ConnectErrors.add(err)
				mu.Unlock()
				ready.Done()
				if s != nil {
					s.close()
				}
				return
			}
			fw := &fanWatcher{events: make([]fanEvent, 0, c.writes)}
			mu.Lock()
			watchers = append(watchers, fw)
			mu.Unlock()
			connected.Add(1)
			ready.Done()
			fw.read(ctx, s, delivered)
			s.close()
		})
	}
	ready.Wait()
	r.Connected = len(watchers)
	if r.Connected < c.watchers {
		r.Hint = streamLimitHint(r.ConnectErrors, c.watchers, c.watchers, b.perIP(c.watchers))
	}
	return watchers, &wg
}

// read records write events until the stream ends.
func (fw *fanWatcher) read(ctx context.Context, s *stream, delivered *atomic.Int64) {
	for {
		ev, err := s.next()
		now := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				fw.ended = errKind(err)
			}
			return
		}
		switch ev.name {
		case "keep-alive":
			continue
		case "cancel", "auth_revoked":
			fw.ended = ev.name + " " + string(ev.data)
			return
		}
		path, value, ok := splitChange(ev.data)
		seq, okSeq := intField(value, `"seq":`)
		t, okT := intField(value, `"t":`)
		if !ok || path != "/msg" || !okSeq || !okT || !ev.hasID {
			fw.other++
			continue
		}
		fw.events = append(fw.events, fanEvent{rev: ev.id, seq: int32(seq), lat: now.Sub(time.Unix(0, t))})
		delivered.Add(1)
	}
}

// write sends the writes at the configured rate, each in its own goroutine
// (at most 64 in flight), and returns the revision of each acknowledged one
// (0 where it failed) and their latencies.
func (c *fanoutConfig) write(ctx context.Context, b *bench, client *http.Client, path string, r *fanoutReport, delivered *atomic.Int64) ([]uint64, []time.Duration) {
	revs := make([]uint64, c.writes)
	lats := make([]time.Duration, c.writes)
	errs := make([]error, c.writes)
	var sent atomic.Int64
	stop := b.progress("fanout", func() string {
		return fmt.Sprintf("writes %d/%d, deliveries %d", sent.Load(), c.writes, delivered.Load())
	})
	defer stop()
	interval := time.Duration(float64(time.Second) / c.rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	inflight := make(chan struct{}, 64)
	var wg sync.WaitGroup
	url := b.url(path)
	for seq := range c.writes {
		if seq > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			errs[seq] = ctx.Err()
			continue
		}
		inflight <- struct{}{}
		wg.Go(func() {
			defer func() { <-inflight }()
			t0 := time.Now()
			resp, _, err := do(ctx, client, http.MethodPut, url, writeBody(nil, seq, c.size))
			lats[seq] = time.Since(t0)
			sent.Add(1)
			if err == nil {
				revs[seq], err = strconv.ParseUint(strings.Trim(resp.Header.Get("ETag"), `"`), 10, 64)
			}
			errs[seq] = err
		})
	}
	wg.Wait()
	var acked []time.Duration
	for seq, err := range errs {
		if err != nil {
			r.WriteErrors.add(err)
			continue
		}
		acked = append(acked, lats[seq])
	}
	r.WritesAcked = len(acked)
	return revs, acked
}

// tally counts what each watcher lost, saw twice or out of order, against
// the acknowledged writes.
func (c *fanoutConfig) tally(r *fanoutReport, watchers []*fanWatcher, revBySeq []uint64) {
	acked := make([]uint64, 0, len(revBySeq))
	for _, rev := range revBySeq {
		if rev != 0 {
			acked = append(acked, rev)
		}
	}
	slices.Sort(acked)
	var lats []time.Duration
	seen := make([]bool, c.writes)
	for _, fw := range watchers {
		if fw.ended != "" {
			r.Dropped[fw.ended]++
		}
		r.OtherEvents += fw.other
		clear(seen)
		var revs []uint64
		for _, ev := range fw.events {
			lats = append(lats, ev.lat)
			switch {
			case ev.seq < 0 || int(ev.seq) >= c.writes:
				r.Mismatched++
				continue
			case seen[ev.seq]:
				r.DupBySeq++
			case revBySeq[ev.seq] != 0:
				r.Delivered++ // once per acknowledged write
			}
			seen[ev.seq] = true
			if want := revBySeq[ev.seq]; want != 0 && want != ev.rev {
				r.Mismatched++
			}
			if n := len(revs); n > 0 && ev.rev <= revs[n-1] {
				if _, found := slices.BinarySearch(revs, ev.rev); found {
					r.DupByRev++
				} else {
					r.OutOfOrder++
				}
				continue
			}
			revs = append(revs, ev.rev)
		}
		for seq, rev := range revBySeq {
			if rev != 0 && !seen[seq] {
				r.LostBySeq++
			}
		}
		for _, rev := range acked {
			if _, found := slices.BinarySearch(revs, rev); !found {
				r.LostByRev++
			}
		}
	}
	r.Latency = summarize(lats)
}

// streamLimitHint explains refused streams: the server's limits are
// flags. total, perRoom and perIP are what the run needs.
func streamLimitHint(errs counter, total, perRoom, perIP int) string {
	if errs["HTTP 429"]+errs["HTTP 503"] == 0 {
		return ""
	}
	return fmt.Sprintf("the server refused streams (429: per-IP or per-room limit; 503: total, or its open-files limit): "+
		"start it with --max-streams %d --max-streams-per-room %d --max-streams-per-ip %d, and an open-files limit (ulimit -Hn) above %d",
		total, max(perRoom, 1000), max(perIP, 1000), total+300)
}
