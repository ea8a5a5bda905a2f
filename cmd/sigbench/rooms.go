package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// roomsConfig is the rooms scenario: R calls set up through sigbase, at
// most N at once, each by a caller and a callee that watch the room and
// exchange an offer, an answer and candidates as real clients do.
type roomsConfig struct {
	prefix      string // of the flag names: "" alone, "NAME." under all
	rooms       int
	concurrency int
	candidates  int
	timeout     time.Duration

	offer, answer []byte // the descriptions, made once per run
}

func defaultRooms() *roomsConfig {
	return &roomsConfig{rooms: 2000, concurrency: 100, candidates: 8, timeout: 30 * time.Second}
}

func (c *roomsConfig) register(fs *flag.FlagSet, p string) {
	c.prefix = p
	fs.IntVar(&c.rooms, p+"rooms", c.rooms, "rooms (calls) to set up")
	fs.IntVar(&c.concurrency, p+"concurrency", c.concurrency, "rooms in progress at once (two watch streams each)")
	fs.IntVar(&c.candidates, p+"candidates", c.candidates, "ICE candidates each side sends")
	fs.DurationVar(&c.timeout, p+"room-timeout", c.timeout, "one room fails when its setup takes longer")
}

func (c *roomsConfig) validate() error {
	if err := checkRange(c.prefix+"rooms", c.rooms, 1, maxCount); err != nil {
		return err
	}
	if err := checkRange(c.prefix+"concurrency", c.concurrency, 1, maxWorkers); err != nil {
		return err
	}
	if err := checkRange(c.prefix+"candidates", c.candidates, 0, 100); err != nil {
		return err
	}
	return checkDuration(c.prefix+"room-timeout", c.timeout, 100*time.Millisecond, maxDuration)
}

func (c *roomsConfig) scenario() scenario { return scenario{name: "rooms", run: c.run} }

type roomsReport struct {
	Scenario     string       `json:"scenario"`
	Target       string       `json:"target"`
	Rooms        int          `json:"rooms"`
	Concurrency  int          `json:"concurrency"`
	Candidates   int          `json:"candidates_each_way"`
	Completed    int          `json:"completed"`
	Failed       int          `json:"failed"`
	Errors       counter      `json:"errors,omitempty"`
	DeleteErrors int          `json:"delete_errors"`
	Seconds      float64      `json:"seconds"`
	RoomsPerS    float64      `json:"rooms_per_s"`
	Completion   latency      `json:"completion"`
	CPU          *cpuUse      `json:"cpu,omitempty"`
	Commit       *commitStats `json:"server_commits,omitempty"`
	Hint         string       `json:"hint,omitempty"`
}

func (r *roomsReport) scenario() string { return r.Scenario }
func (r *roomsReport) ok() bool {
	return r.Completed == r.Rooms && r.Failed == 0 && r.DeleteErrors == 0
}

func (r *roomsReport) summary(w io.Writer) {
	fmt.Fprintf(w, "rooms: %d calls on %s, %d at once; offer, answer and %d candidates each way\n", r.Rooms, r.Target, r.Concurrency, r.Candidates)
	fmt.Fprintf(w, "  completed %d, failed %d (errors: %s), delete errors %d\n", r.Completed, r.Failed, r.Errors, r.DeleteErrors)
	fmt.Fprintf(w, "  %.0f rooms/s over %.2fs; completion %s\n", r.RoomsPerS, r.Seconds, r.Completion)
	fmt.Fprintf(w, "  %s\n", r.CPU)
	if r.Commit != nil {
		fmt.Fprintf(w, "  %s\n", r.Commit)
	}
	if r.Hint != "" {
		fmt.Fprintf(w, "  %s\n", r.Hint)
	}
}

func (c *roomsConfig) run(ctx context.Context, b *bench) ([]report, error) {
	client := b.restClient(2 * c.concurrency)
	defer client.CloseIdleConnections()
	if err := b.checkServer(ctx, client); err != nil {
		return nil, err
	}
	c.offer, c.answer = description("offer"), description("answer")
	r := &roomsReport{Scenario: "rooms", Target: b.base.Host, Rooms: c.rooms, Concurrency: c.concurrency,
		Candidates: c.candidates, Errors: counter{}}
	var next, done, failed, delErrs atomic.Int64
	var mu sync.Mutex
	lats := make([][]time.Duration, c.concurrency)
	stop := b.progress("rooms", func() string {
		return fmt.Sprintf("%d/%d rooms done, %d failed", done.Load(), c.rooms, failed.Load())
	})
	before := scrape(ctx, client, b)
	cpu := b.startCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range c.concurrency {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < c.rooms && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				res := c.call(ctx, b, client, b.room("call", i))
				if res.deleteErr != nil {
					delErrs.Add(1)
				}
				if res.err != nil {
					failed.Add(1)
					mu.Lock()
					r.Errors.add(res.err)
					mu.Unlock()
					continue
				}
				lats[w] = append(lats[w], res.elapsed)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r.CPU = cpu.stop()
	stop()
	r.Commit = commitDelta(before, scrape(ctx, client, b))
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	r.Completed, r.Failed, r.DeleteErrors = len(all), int(failed.Load()), int(delErrs.Load())
	r.Seconds, r.RoomsPerS = elapsed.Seconds(), rate(r.Completed, elapsed)
	r.Completion = summarize(all)
	r.Hint = streamLimitHint(r.Errors, 2*c.concurrency, 2, b.perIP(2*c.concurrency))
	return []report{r}, ctx.Err()
}

// call sets up one room: both sides watch it, the caller offers and sends
// its candidates, the callee answers once it saw the offer and sends its
// own; each is done when it has the other's description and every remote
// candidate. Then both hang up and the room is deleted (not timed).
func (c *roomsConfig) call(ctx context.Context, b *bench, client *http.Client, room string) callResult {
	path := "/rooms/" + room
	var res callResult
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	res.elapsed, res.err = c.exchange(cctx, b, client, path, time.Now())
	cancel()
	dctx, cancel := b.cleanup(ctx)
	defer cancel()
	_, _, res.deleteErr = do(dctx, client, http.MethodDelete, b.url(path), nil)
	return res
}

type callResult struct {
	elapsed        time.Duration // until both sides were set up
	err, deleteErr error
}

func (c *roomsConfig) exchange(ctx context.Context, b *bench, client *http.Client, path string, start time.Time) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	caller, err := b.openStream(ctx, path, 4096)
	if err != nil {
		return 0, err
	}
	defer caller.close()
	callee, err := b.openStream(ctx, path, 4096)
	if err != nil {
		return 0, err
	}
	defer callee.close()
	callerSide := peer{client: client, b: b, path: path, own: "callerCandidates", remote: "calleeCandidates", sdp: "answer", n: c.candidates}
	calleeSide := peer{client: client, b: b, path: path, own: "calleeCandidates", remote: "callerCandidates", sdp: "offer", n: c.candidates}
	errc := make(chan error, 2)
	go func() { errc <- callerSide.runCaller(ctx, caller, c.offer) }()
	go func() { errc <- calleeSide.runCallee(ctx, callee, c.answer) }()
	var errs []error
	for range 2 {
		if err := <-errc; err != nil {
			errs = append(errs, err)
			cancel() // the other side would wait for nothing
		}
	}
	if len(errs) > 0 {
		return 0, errs[0]
	}
	return time.Since(start), nil
}

// peer is one side of a call.
type peer struct {
	b      *bench
	client *http.Client
	path   string
	own    string // the key this side POSTs its candidates to
	remote string // the other side's candidates key
	sdp    string // the description this side waits for: offer or answer
	n      int    // candidates each way
	view   roomView
}

func (p *peer) runCaller(ctx context.Context, s *stream, offer []byte) error {
	sent := p.send(ctx, "offer", offer)
	if err := p.view.readUntil(s, p.complete); err != nil {
		return err
	}
	return <-sent
}

func (p *peer) runCallee(ctx context.Context, s *stream, answer []byte) error {
	if err := p.view.readUntil(s, func(v *roomView) bool { return v.has["offer"] }); err != nil {
		return err
	}
	sent := p.send(ctx, "answer", answer)
	if err := p.view.readUntil(s, p.complete); err != nil {
		return err
	}
	return <-sent
}

func (p *peer) complete(v *roomView) bool {
	return v.has[p.sdp] && len(v.candidates[p.remote]) >= p.n
}

// send PUTs the description, then POSTs the candidates one by one, as a
// browser trickles them; the result arrives on the channel.
func (p *peer) send(ctx context.Context, kind string, desc []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, _, err := do(ctx, p.client, http.MethodPut, p.b.url(p.path+"/"+kind), desc)
		for i := 0; i < p.n && err == nil; i++ {
			_, _, err = do(ctx, p.client, http.MethodPost, p.b.url(p.path+"/"+p.own), candidate(i))
		}
		done <- err
	}()
	return done
}

// errStreamEnded: the server ended a watch before the call was set up.
var errStreamEnded = errors.New("watch ended by the server")
