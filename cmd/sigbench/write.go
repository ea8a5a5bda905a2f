package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// writeConfig is the write scenario: P writers, each PUTting to its own
// room as fast as it can for D, then the same load against the reference.
type writeConfig struct {
	prefix           string // of the flag names: "" alone, "NAME." under all
	writers          int
	duration         time.Duration
	maxWrites        int
	size             int
	reference        bool
	referenceOnly    bool
	referenceProcess bool
}

func defaultWrite() *writeConfig {
	return &writeConfig{writers: 32, duration: 5 * time.Second, maxWrites: 5_000_000, size: 128, reference: true}
}

func (c *writeConfig) register(fs *flag.FlagSet, p string) {
	c.prefix = p
	fs.IntVar(&c.writers, p+"writers", c.writers, "concurrent writers, each on its own room")
	fs.DurationVar(&c.duration, p+"duration", c.duration, "how long to write (at most 10m)")
	fs.IntVar(&c.maxWrites, p+"max-writes", c.maxWrites, "stop after this many writes in all")
	fs.IntVar(&c.size, p+"size", c.size, "bytes of JSON per write")
	if !c.referenceOnly {
		fs.BoolVar(&c.reference, p+"reference", c.reference, "also run the same load against a bare net/http handler and report ratios")
	}
	fs.BoolVar(&c.referenceProcess, p+"reference-process", c.referenceProcess, "run the reference handler in a child process (as sigbase is) rather than inside sigbench")
}

func (c *writeConfig) validate() error {
	if err := checkRange(c.prefix+"writers", c.writers, 1, maxWorkers); err != nil {
		return err
	}
	if err := checkRange(c.prefix+"max-writes", c.maxWrites, 1, maxCount); err != nil {
		return err
	}
	if err := checkRange(c.prefix+"size", c.size, 32, 60<<10); err != nil {
		return err
	}
	return checkDuration(c.prefix+"duration", c.duration, 100*time.Millisecond, maxDuration)
}

func (c *writeConfig) scenario() scenario {
	if c.referenceOnly {
		return scenario{name: "reference", run: c.runReferenceOnly}
	}
	return scenario{name: "write", run: c.run}
}

// loadResult is what one write load measured.
type loadResult struct {
	Writes     int          `json:"writes"`
	Seconds    float64      `json:"seconds"`
	Rate       float64      `json:"writes_per_s"`
	Latency    latency      `json:"latency"`
	Errors     int          `json:"errors"`
	ErrorKinds counter      `json:"error_kinds,omitempty"`
	CPU        *cpuUse      `json:"cpu,omitempty"`
	Commit     *commitStats `json:"server_commits,omitempty"`
}

type writeReport struct {
	Scenario  string  `json:"scenario"`
	Target    string  `json:"target"`
	Writers   int     `json:"writers"`
	Duration  float64 `json:"duration_s"`
	BodyBytes int     `json:"body_bytes"`
	Process   bool    `json:"separate_process,omitempty"` // the reference ran in a process of its own
	loadResult
	VsReference *vsReference `json:"vs_reference,omitempty"`
}

// vsReference relates sigbase's figures to the reference's: rate as a
// share of the reference rate, latencies as multiples of its latencies.
type vsReference struct {
	ReferenceRate float64 `json:"reference_writes_per_s"`
	RateRatio     float64 `json:"rate_ratio"`
	P50Ratio      float64 `json:"p50_ratio"`
	P99Ratio      float64 `json:"p99_ratio"`
	MaxRatio      float64 `json:"max_ratio"`
}

func (r *writeReport) scenario() string { return r.Scenario }
func (r *writeReport) ok() bool         { return r.Errors == 0 && r.Writes > 0 }

func (r *writeReport) summary(w io.Writer) {
	what := "sigbase " + r.Target
	if r.Scenario == "reference" {
		what = "bare net/http handler in sigbench, " + r.Target
		if r.Process {
			what = "bare net/http handler in a child process, " + r.Target
		}
	}
	fmt.Fprintf(w, "%s: %d writers × %s on %s, %d-byte bodies\n", r.Scenario, r.Writers, time.Duration(r.Duration*float64(time.Second)), what, r.BodyBytes)
	fmt.Fprintf(w, "  %d writes in %.2fs = %.0f writes/s; errors: %s\n", r.Writes, r.Seconds, r.Rate, r.ErrorKinds)
	fmt.Fprintf(w, "  latency %s\n", r.Latency)
	fmt.Fprintf(w, "  %s\n", r.CPU)
	if r.Commit != nil {
		fmt.Fprintf(w, "  %s\n", r.Commit)
	}
	if v := r.VsReference; v != nil {
		fmt.Fprintf(w, "  vs reference (%.0f writes/s): rate %.0f %%, p50 %.2f×, p99 %.2f×, max %.2f×\n",
			v.ReferenceRate, v.RateRatio*100, v.P50Ratio, v.P99Ratio, v.MaxRatio)
	}
}

func (c *writeConfig) run(ctx context.Context, b *bench) ([]report, error) {
	client := b.restClient(c.writers)
	defer client.CloseIdleConnections()
	if err := b.checkServer(ctx, client); err != nil {
		return nil, err
	}
	urls := make([]string, c.writers)
	for i := range urls {
		urls[i] = b.url("/rooms/" + b.room("w", i) + "/msg")
	}
	before := scrape(ctx, client, b)
	res := c.drive(ctx, b, "write", client, urls, b.startCPU)
	res.Commit = commitDelta(before, scrape(ctx, client, b))
	cctx, cancel := b.cleanup(ctx)
	for i := range urls {
		_, _, _ = do(cctx, client, http.MethodDelete, b.url("/rooms/"+b.room("w", i)), nil)
	}
	cancel()
	wr := c.report("write", b.base.Host, res)
	reports := []report{wr}
	if !c.reference || ctx.Err() != nil {
		return reports, ctx.Err()
	}
	ref, err := c.runReference(ctx, b)
	if err != nil {
		return reports, err
	}
	wr.VsReference = &vsReference{
		ReferenceRate: ref.Rate,
		RateRatio:     ratio(res.Rate, ref.Rate),
		P50Ratio:      ratio(res.Latency.P50, ref.Latency.P50),
		P99Ratio:      ratio(res.Latency.P99, ref.Latency.P99),
		MaxRatio:      ratio(res.Latency.Max, ref.Latency.Max),
	}
	return append(reports, ref), ctx.Err()
}

func (c *writeConfig) report(name, target string, res loadResult) *writeReport {
	return &writeReport{
		Scenario: name, Target: target, Writers: c.writers, Duration: c.duration.Seconds(),
		BodyBytes: c.size, loadResult: res,
	}
}

// drive runs the write load: each writer PUTs to its own URL until the
// duration is over, the write cap is reached or ctx ends. Requests in flight
// at the end finish normally.
func (c *writeConfig) drive(ctx context.Context, b *bench, name string, client *http.Client, urls []string, meter func() *cpuMeter) loadResult {
	var issued, done, failed atomic.Int64
	lats := make([][]time.Duration, c.writers)
	errs := make([]counter, c.writers)
	stop := b.progress(name, func() string {
		return fmt.Sprintf("%d writes, %d errors", done.Load(), failed.Load())
	})
	cpu := meter()
	start := time.Now()
	end := start.Add(c.duration)
	var wg sync.WaitGroup
	for i := range c.writers {
		wg.Go(func() {
			lat, ec := make([]time.Duration, 0, 1024), counter{}
			body := make([]byte, 0, c.size+64)
			for seq := 0; time.Now().Before(end) && ctx.Err() == nil && issued.Add(1) <= int64(c.maxWrites); seq++ {
				body = writeBody(body[:0], seq, c.size)
				t0 := time.Now()
				_, _, err := do(ctx, client, http.MethodPut, urls[i], body)
				if err != nil {
					ec.add(err)
					failed.Add(1)
					continue
				}
				lat = append(lat, time.Since(t0))
				done.Add(1)
			}
			lats[i], errs[i] = lat, ec
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	res := loadResult{Seconds: elapsed.Seconds(), ErrorKinds: counter{}, CPU: cpu.stop()}
	var all []time.Duration
	for i := range lats {
		all = append(all, lats[i]...)
		res.ErrorKinds.merge(errs[i])
	}
	res.Writes, res.Errors = len(all), res.ErrorKinds.total()
	res.Rate = rate(res.Writes, elapsed)
	res.Latency = summarize(all)
	return res
}

// writeBody is {"seq":N,"t":<unix nanos>,"pad":"xx…"}, padded to size bytes.
func writeBody(b []byte, seq, size int) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"pad":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}
