package main

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"
)

// A stream cut by a crash must look like an error to an SSE client, not a
// clean end: the r3labs client, which stops for good after a clean end,
// reconnects on its own across a SIGKILL and a restart, resumes with
// Last-Event-ID, and gets every change once.
func TestR3labsClientResumesAcrossSIGKILL(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "db")
	first := startProcess(t, "--addr", "127.0.0.1:0", "--data", data, "--rate-limit", "0")
	addr := strings.TrimPrefix(first.url, "http://")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := sse.NewClient(first.url+"/rooms/r", sse.ClientMaxBufferSize(1<<20))
	client.ReconnectStrategy = backoff.WithContext(backoff.NewConstantBackOff(100*time.Millisecond), ctx)
	type event struct{ id, name, data string }
	events := make(chan event, 100)
	ended := make(chan error, 1)
	go func() {
		ended <- client.SubscribeRawWithContext(ctx, func(ev *sse.Event) {
			if len(ev.Event) > 0 && string(ev.Event) != "keep-alive" {
				events <- event{string(ev.ID), string(ev.Event), string(ev.Data)}
			}
		})
	}()
	var got []event
	waitFor := func(data string) {
		t.Helper()
		for {
			select {
			case ev := <-events:
				got = append(got, ev)
				if strings.Contains(ev.data, data) {
					return
				}
			case err := <-ended:
				t.Fatalf("the client stopped (%v) after %v, waiting for %s", err, got, data)
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s; got %v", data, got)
			}
		}
	}
	waitFor(`"path":"/"`) // the snapshot
	for _, k := range []string{"k1", "k2", "k3"} {
		request(t, "PUT", first.url+"/rooms/r/"+k, `1`)
		waitFor(`"/` + k + `"`)
	}
	first.kill()
	time.Sleep(500 * time.Millisecond) // several failed reconnects
	second := startProcess(t, "--addr", addr, "--data", data, "--rate-limit", "0")
	for _, k := range []string{"k4", "k5", "k6"} {
		request(t, "PUT", second.url+"/rooms/r/"+k, `2`)
	}
	waitFor(`"/k6"`)
	for i := 1; i < len(got); i++ {
		prev, _ := strconv.ParseUint(got[i-1].id, 10, 64)
		if id, err := strconv.ParseUint(got[i].id, 10, 64); err != nil || id <= prev {
			t.Fatalf("event ids out of order or repeated: %v", got)
		}
	}
	if len(got) != 7 || got[0].data != `{"path":"/","data":null}` {
		t.Fatalf("got %v, want the snapshot then k1..k6 once each", got)
	}
}
