package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Hard caps: no flag value can make a run unbounded.
const (
	maxDeadline = time.Hour
	maxDuration = 10 * time.Minute
	maxWorkers  = 10_000
	maxCount    = 50_000_000
)

// commonConfig holds the flags every scenario shares.
type commonConfig struct {
	url       string
	deadline  time.Duration
	progress  time.Duration
	timeout   time.Duration
	sources   int
	serverPID int
}

func (c *commonConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "the running sigbase (loopback only)")
	fs.DurationVar(&c.deadline, "deadline", 10*time.Minute, "the whole run ends by then (at most 1h)")
	fs.DurationVar(&c.progress, "progress", 2*time.Second, "print a progress line to stderr this often (0: never)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "one request, or one stream's connect, may take this long")
	fs.IntVar(&c.sources, "sources", 250, "watcher source addresses 127.0.0.2, 127.0.0.3, ... (per-IP stream limits)")
	fs.IntVar(&c.serverPID, "server-pid", 0, "the server's process id, for RSS and CPU (0: found by the listening port)")
}

func (c *commonConfig) validate() error {
	switch {
	case c.deadline <= 0 || c.deadline > maxDeadline:
		return fmt.Errorf("-deadline: want (0, %s], got %s", maxDeadline, c.deadline)
	case c.timeout <= 0 || c.timeout > maxDuration:
		return fmt.Errorf("-timeout: want (0, %s], got %s", maxDuration, c.timeout)
	case c.sources < 1 || c.sources > 60_000:
		return fmt.Errorf("-sources: want 1..60000, got %d", c.sources)
	case c.progress < 0:
		return fmt.Errorf("-progress: want >= 0, got %s", c.progress)
	}
	return nil
}

// scenario is one runnable part of a plan.
type scenario struct {
	name string
	run  func(ctx context.Context, b *bench) ([]report, error)
}

// scenarioConfig is the flags of one scenario. register names its flags
// with a prefix ("" alone, "fanout." under all).
type scenarioConfig interface {
	register(fs *flag.FlagSet, prefix string)
	validate() error
	scenario() scenario
}

type plan struct {
	common    commonConfig
	scenarios []scenario
}

// parsePlan turns a scenario name and its flags into what to run.
func parsePlan(name string, args []string, getenv func(string) string, stderr io.Writer) (*plan, error) {
	fs := flag.NewFlagSet("sigbench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	p := &plan{}
	p.common.register(fs)
	var configs []scenarioConfig
	switch name {
	case "write":
		configs = []scenarioConfig{defaultWrite()}
	case "reference":
		w := defaultWrite()
		w.referenceOnly = true
		configs = []scenarioConfig{w}
	case "fanout":
		configs = []scenarioConfig{defaultFanout()}
	case "rooms":
		configs = []scenarioConfig{defaultRooms()}
	case "idle":
		configs = []scenarioConfig{defaultIdle()}
	case "all":
		w, f, r := defaultWrite(), defaultFanout(), defaultRooms()
		w.duration, f.writes, r.rooms = 2*time.Second, 100, 1000
		configs = []scenarioConfig{w, f, r, defaultIdle()}
	default:
		fmt.Fprint(stderr, usage)
		return nil, fmt.Errorf("unknown scenario %q", name)
	}
	for _, c := range configs {
		prefix := ""
		if name == "all" {
			prefix = c.scenario().name + "."
		}
		c.register(fs, prefix)
	}
	if err := parseWithEnv(fs, args, getenv); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := p.common.validate(); err != nil {
		return nil, err
	}
	for _, c := range configs {
		if err := c.validate(); err != nil {
			return nil, err
		}
		p.scenarios = append(p.scenarios, c.scenario())
	}
	return p, nil
}

// parseWithEnv sets every flag not on the command line from its SIGBENCH_*
// variable (-server-pid: SIGBENCH_SERVER_PID), then parses args.
func parseWithEnv(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "SIGBENCH_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(f.Name))
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return fs.Parse(args)
}

// checkRange is the common bound check of an int flag.
func checkRange(name string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("-%s: want %d..%d, got %d", name, lo, hi, v)
	}
	return nil
}

func checkDuration(name string, d, lo, hi time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("-%s: want %s..%s, got %s", name, lo, hi, d)
	}
	return nil
}
