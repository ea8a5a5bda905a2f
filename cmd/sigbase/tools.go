package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"
)

// watchCmd prints every event of a location and keeps resuming with
// Last-Event-ID across disconnects, server cancels and restarts.
func watchCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sigbase watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	token := fs.String("token", "", "access token (when auth is on)")
	if err := envFallback(fs, args, getenv); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: sigbase watch [--token T] URL (e.g. http://127.0.0.1:8080/rooms/r1)")
	}
	url := fs.Arg(0)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	client := sse.NewClient(url, sse.ClientMaxBufferSize(4<<20))
	if *token != "" {
		client.Headers["Authorization"] = "Bearer " + *token
	}
	client.ReconnectStrategy = backoff.WithContext(newBackoff(), ctx)
	client.ReconnectNotify = func(err error, next time.Duration) {
		fmt.Fprintf(stderr, "%s reconnecting in %s: %v\n", time.Now().Format(time.TimeOnly), next.Round(time.Millisecond), err)
	}
	for ctx.Err() == nil {
		// The client returns nil when the server ends the stream (cancel,
		// shutdown): reconnect; it sends the last id it saw.
		err := client.SubscribeRawWithContext(ctx, func(ev *sse.Event) { printEvent(stdout, ev) })
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			return fmt.Errorf("watch %s: %w", url, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func newBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 250*time.Millisecond, 10*time.Second, 0
	return b
}

// printEvent writes one event: time, id, event, path, then the data pretty.
func printEvent(w io.Writer, ev *sse.Event) {
	name := string(ev.Event)
	if name == "" && len(ev.Data) == 0 {
		return // the retry: frame
	}
	now := time.Now().Format("15:04:05.000")
	var msg struct {
		Path string          `json:"path"`
		Data json.RawMessage `json:"data"`
	}
	if (name == "put" || name == "patch") && json.Unmarshal(ev.Data, &msg) == nil {
		var pretty bytes.Buffer
		if json.Indent(&pretty, msg.Data, "  ", "  ") != nil {
			pretty.Write(msg.Data)
		}
		fmt.Fprintf(w, "%s id=%s %s %s\n  %s\n", now, ev.ID, name, msg.Path, pretty.String())
		return
	}
	fmt.Fprintf(w, "%s %s %s\n", now, name, ev.Data)
}

// healthCmd exits 0 when the server answers /healthz: a container health
// check that needs no curl.
func healthCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sigbase health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := "http://127.0.0.1:8080"
	if addr := getenv("SIGBASE_ADDR"); addr != "" {
		base = "http://" + addr
	}
	if fs.NArg() > 0 {
		base = fs.Arg(0)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/healthz", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s: %s", res.Status, body)
	}
	fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(body))
	return nil
}
