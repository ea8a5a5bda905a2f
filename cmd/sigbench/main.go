// Command sigbench is a load generator for a running sigbase. It talks only
// to loopback addresses, bounds every run in count and time, prints a progress
// line to stderr on long runs, and writes a human summary plus one JSON line
// per scenario to stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sigbench:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: sigbench SCENARIO [flags]

scenarios (sigbench SCENARIO -h lists the flags of one):
  write       P writers PUT to their own rooms for D seconds (and the reference)
  fanout      S watchers on one room, M writes at a fixed rate: delivery latency
  rooms       R rooms, each a caller and a callee exchanging offer, answer, candidates
  idle        C idle watchers: the server's RSS per watcher
  reference   the write load against a bare net/http handler (-reference-process: in a child)
  all         every scenario in sequence, with short durations

The target (-url, or SIGBENCH_URL) must be a loopback address: 127.0.0.0/8 or [::1].
stdout: a summary, then one JSON line per scenario (lines starting with '{').
`

// run is the whole program; main only supplies the OS.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	name, args := args[0], args[1:]
	if name == "reference-server" {
		return referenceServer(ctx, args, stdout, stderr)
	}
	plan, err := parsePlan(name, args, getenv, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, plan.common.deadline)
	defer cancel()

	b, err := newBench(ctx, plan.common, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	var reports []report
	var failed []string
	for _, sc := range plan.scenarios {
		rs, err := sc.run(ctx, b)
		reports = append(reports, rs...)
		for _, r := range rs {
			if !r.ok() {
				failed = append(failed, r.scenario())
			}
		}
		if err != nil {
			printReports(stdout, reports)
			return fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	if err := printReports(stdout, reports); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("failures in %v (see the summary)", failed)
	}
	return nil
}

// report is the outcome of one scenario: a human summary and, marshalled,
// its JSON line.
type report interface {
	scenario() string
	summary(w io.Writer)
	ok() bool // nothing lost, duplicated or failed
}

// printReports writes every summary, then one JSON line per report.
func printReports(w io.Writer, reports []report) error {
	for _, r := range reports {
		r.summary(w)
		fmt.Fprintln(w)
	}
	for _, r := range reports {
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode %s report: %w", r.scenario(), err)
		}
		if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
			return err
		}
	}
	return nil
}
