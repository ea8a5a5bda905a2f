package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// referenceHandler is what HTTP alone costs: it reads the body, stores
// nothing and answers 200 with a small JSON object.
func referenceHandler(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("ETag", `"1"`)
	_, _ = io.WriteString(w, `{"ok":true}`)
}

// startReference serves referenceHandler on 127.0.0.1:0 in this process.
func startReference() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(referenceHandler),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-served
	}, nil
}

// referenceServer is the hidden command `sigbench reference-server -for D`:
// the reference handler in a process of its own, as sigbase is, until ctx
// ends (SIGTERM, or its parent's death) or D has passed.
func referenceServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sigbench reference-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	life := fs.Duration("for", time.Minute, "stop after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkDuration("for", *life, time.Second, maxDeadline+time.Minute); err != nil {
		return err
	}
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, *life)
	defer cancel()
	url, stop, err := startReference()
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(stdout, "listening on %s\n", url)
	<-ctx.Done()
	return nil
}

// startReferenceProcess runs `sigbench reference-server` as a child that
// lives no longer than ctx (plus a little) nor than sigbench.
func startReferenceProcess(ctx context.Context) (url string, pid int, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	life := maxDeadline
	if d, ok := ctx.Deadline(); ok {
		life = time.Until(d) + 10*time.Second
	}
	cmd := exec.Command(exe, "reference-server", "-for", life.Round(time.Second).String())
	cmd.Env = append(os.Environ(), "SIGBENCH_REFERENCE_SERVER=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-lines:
		if u, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on "); ok {
			return u, cmd.Process.Pid, stop, nil
		}
		err = fmt.Errorf("reference server said %q", line)
	case <-time.After(10 * time.Second):
		err = errors.New("reference server did not start in 10s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	stop()
	return "", 0, nil, err
}

// runReference drives the write load against the reference handler: in
// this process, or with -reference-process in a child process of its own.
func (c *writeConfig) runReference(ctx context.Context, b *bench) (*writeReport, error) {
	var base string
	var stop func()
	var err error
	meter := func() *cpuMeter { return newCPUMeter(0) } // in process: its CPU is sigbench's
	if c.referenceProcess {
		var pid int
		base, pid, stop, err = startReferenceProcess(ctx)
		meter = func() *cpuMeter { return newCPUMeter(pid) }
	} else {
		base, stop, err = startReference()
	}
	if err != nil {
		return nil, fmt.Errorf("reference: %w", err)
	}
	defer stop()
	client := b.restClient(c.writers)
	defer client.CloseIdleConnections()
	urls := make([]string, c.writers)
	for i := range urls {
		urls[i] = base + "/rooms/" + b.room("w", i) + "/msg"
	}
	res := c.drive(ctx, b, "reference", client, urls, meter)
	r := c.report("reference", strings.TrimPrefix(base, "http://"), res)
	r.Process = c.referenceProcess
	return r, nil
}

func (c *writeConfig) runReferenceOnly(ctx context.Context, b *bench) ([]report, error) {
	r, err := c.runReference(ctx, b)
	if err != nil {
		return nil, err
	}
	return []report{r}, ctx.Err()
}
