package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// block is a fenced code block of the README: its info string and text.
type block struct{ info, text string }

func readmeBlocks(t *testing.T) []block {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []block
	for _, part := range strings.Split(string(raw), "```")[1:] {
		info, text, _ := strings.Cut(part, "\n")
		blocks = append(blocks, block{strings.TrimSpace(info), text})
	}
	// Fences alternate open, close: keep the openings.
	var open []block
	for i := 0; i < len(blocks); i += 2 {
		open = append(open, blocks[i])
	}
	return open
}

// The README's curl walkthrough, run as written against a real server: the
// commands succeed and the watcher prints what the README shows.
func TestReadmeCurlWalkthrough(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"curl", "bash"} {
		_, err := exec.LookPath(tool)
		requireFull(t, err == nil, tool+" to run the README walkthrough (apt-get install "+tool+")")
	}
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "sigbase.db"))
	local := func(cmd string) string { return strings.ReplaceAll(cmd, "http://127.0.0.1:8080", s.url) }

	var watchCmd, shownOutput string
	var steps []string
	for _, b := range readmeBlocks(t) {
		switch b.info {
		case "sh watch":
			watchCmd = b.text
		case "sh caller", "sh callee":
			steps = append(steps, b.text)
		case "text":
			if shownOutput == "" {
				shownOutput = b.text
			}
		}
	}
	if watchCmd == "" || len(steps) != 3 || shownOutput == "" {
		t.Fatalf("README walkthrough blocks: watch %q, %d steps, output %q", watchCmd, len(steps), shownOutput)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watcher := exec.CommandContext(ctx, "bash", "-c", local(watchCmd))
	watched := &syncBuffer{}
	watcher.Stdout = watched
	if err := watcher.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); watcher.Wait() }()
	watched.waitFor(t, `data: {"path":"/","data":null}`)

	var outputs []string
	for _, step := range steps {
		// Not -e: the resume example ends its stream with --max-time (exit 28).
		out, _ := exec.CommandContext(ctx, "bash", "-c", local(step)).CombinedOutput()
		outputs = append(outputs, string(out))
	}
	watched.waitFor(t, "id: 4\nevent: put\ndata: {\"path\":\"/\",\"data\":null}")

	pushID := regexp.MustCompile(`/callerCandidates/[-0-9A-Za-z_]{20}`)
	got := pushID.ReplaceAllString(watched.String(), "/callerCandidates/ID")
	want := pushID.ReplaceAllString(shownOutput, "/callerCandidates/ID")
	if !strings.HasPrefix(got, want) {
		t.Errorf("the watcher printed\n%s\nthe README shows\n%s", got, want)
	}
	if !strings.Contains(outputs[1], `{"type":"offer","sdp":"v=0 (offer)"}`) && !strings.Contains(outputs[1], `{"sdp":"v=0 (offer)","type":"offer"}`) {
		t.Errorf("the callee's read of the offer: %s", outputs[1])
	}
	resume := outputs[2]
	if !strings.Contains(resume, "id: 3\nevent: patch") || strings.Contains(resume, "id: 2\n") || strings.Contains(resume, "event: put\ndata: {\"path\":\"/\",") {
		t.Errorf("resume with Last-Event-ID 2 printed:\n%s", resume)
	}
	if !strings.Contains(resume, "HTTP/1.1 412") || !bytes.Contains([]byte(resume), []byte(`ETag: "1"`)) && !strings.Contains(resume, `Etag: "1"`) {
		t.Errorf("the stale If-Match write did not answer 412 with the current ETag:\n%s", resume)
	}
}

// The README's presence section, run as written: three members, one stream
// closed, and after the grace period the room has two.
func TestReadmePresence(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"curl", "bash"} {
		_, err := exec.LookPath(tool)
		requireFull(t, err == nil, tool+" to run the README presence section (apt-get install "+tool+")")
	}
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "sigbase.db"))
	var script string
	for _, b := range readmeBlocks(t) {
		if b.info == "sh presence" {
			script = strings.ReplaceAll(b.text, "http://127.0.0.1:8080", s.url)
		}
	}
	if script == "" {
		t.Fatal("README has no sh presence block")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("the presence section failed: %v\n%s", err, out)
	}
	if want := "{\"ann\":true,\"bob\":true,\"cleo\":true}\n{\"bob\":true,\"cleo\":true}\n"; string(out) != want {
		t.Fatalf("the presence section printed\n%s\nwant\n%s", out, want)
	}
}
