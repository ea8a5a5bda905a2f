package main

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// followStream opens a watch and reads up to its snapshot; cancel ends it.
func followStream(t *testing.T, rawURL string) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", rawURL, nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		cancel()
		t.Fatalf("watch %s: %v %v", rawURL, res, err)
	}
	r := bufio.NewReader(res.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			cancel()
			t.Fatalf("watch %s: %v", rawURL, err)
		}
		if strings.HasPrefix(line, "event: put") {
			break
		}
	}
	go func() { _, _ = r.WriteTo(discardWriter{}); res.Body.Close() }()
	t.Cleanup(cancel)
	return cancel
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// onDisconnect actions outlive a crash: after the restart, the sessions
// whose streams come back within the grace period keep their keys, and the
// others' actions run once it has passed.
func TestOnDisconnectSurvivesRestart(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "db")
	args := []string{"--data", data, "--rate-limit", "0", "--disconnect-grace", "1s"}
	first := startProcess(t, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	addr := strings.TrimPrefix(first.url, "http://")
	stream := func(base, peer string) string {
		v := url.Values{"session": {peer}, "ondisconnect": {`{"op":"delete","path":"members/` + peer + `"}`}}
		return base + "/rooms/r?" + v.Encode()
	}
	for _, peer := range []string{"gone", "back"} {
		request(t, "PUT", first.url+"/rooms/r/members/"+peer, `true`)
		followStream(t, stream(first.url, peer))
	}
	first.kill()
	second := startProcess(t, append([]string{"--addr", addr}, args...)...)
	followStream(t, stream(second.url, "back")) // within the grace period
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := request(t, "GET", second.url+"/rooms/r/members/gone", "")
		if body == "null" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the member whose stream never came back is still there 10 s after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // past the grace period of the restart
	if _, body := request(t, "GET", second.url+"/rooms/r/members/back", ""); body != "true" {
		t.Fatalf("the member that came back: %s, want true", body)
	}
}
