package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigbase/sigbase/api"
	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/bolt"
)

// TestMain lets the test binary stand in for sigbench when the write
// scenario starts its reference server as a child process.
func TestMain(m *testing.M) {
	if os.Getenv("SIGBENCH_REFERENCE_SERVER") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startServer runs a real sigbase in this process on 127.0.0.1:0.
func startServer(t *testing.T) string {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(st, api.Config{MaxStreams: 5000, MaxStreamsPerIP: 5000, MaxStreamsPerRoom: 5000})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		go h.Shutdown(context.Background())
		srv.Close()
		st.Close()
	})
	return srv.URL
}

// runBench runs sigbench and returns its JSON lines by scenario.
func runBench(t *testing.T, args ...string) map[string]map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append(args, "-progress", "0"), func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("sigbench %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, &stdout, &stderr)
	}
	reports := map[string]map[string]any{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("JSON line %s: %v", line, err)
		}
		name, _ := r["scenario"].(string)
		if _, dup := reports[name]; dup {
			t.Fatalf("two JSON lines for %q", name)
		}
		reports[name] = r
	}
	return reports
}

// want checks numeric fields of a report.
func want(t *testing.T, r map[string]any, fields map[string]float64) {
	t.Helper()
	for k, v := range fields {
		got, ok := r[k].(float64)
		if !ok || got != v {
			t.Errorf("%s: %s = %v, want %v", r["scenario"], k, r[k], v)
		}
	}
}

func positive(t *testing.T, r map[string]any, fields ...string) {
	t.Helper()
	for _, k := range fields {
		if got, ok := r[k].(float64); !ok || got <= 0 {
			t.Errorf("%s: %s = %v, want > 0", r["scenario"], k, r[k])
		}
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	reps := runBench(t, "write", "-url", startServer(t), "-writers", "4", "-duration", "1s")
	w, ref := reps["write"], reps["reference"]
	if w == nil || ref == nil || len(reps) != 2 {
		t.Fatalf("got reports %v, want write and reference", reps)
	}
	want(t, w, map[string]float64{"errors": 0, "writers": 4})
	want(t, ref, map[string]float64{"errors": 0})
	positive(t, w, "writes", "writes_per_s")
	positive(t, ref, "writes", "writes_per_s")
	vs, _ := w["vs_reference"].(map[string]any)
	if got, _ := vs["rate_ratio"].(float64); got <= 0 {
		t.Errorf("vs_reference = %v, want a positive rate_ratio", w["vs_reference"])
	}
}

func TestWriteWithoutReference(t *testing.T) {
	t.Parallel()
	reps := runBench(t, "write", "-url", startServer(t), "-writers", "2", "-duration", "300ms", "-reference=false")
	if len(reps) != 1 || reps["write"]["vs_reference"] != nil {
		t.Fatalf("got %v, want only a write report without vs_reference", reps)
	}
}

func TestReferenceProcess(t *testing.T) {
	t.Parallel()
	reps := runBench(t, "reference", "-writers", "2", "-duration", "1s", "-reference-process")
	r := reps["reference"]
	want(t, r, map[string]float64{"errors": 0})
	positive(t, r, "writes")
	if r["separate_process"] != true {
		t.Errorf("separate_process = %v, want true", r["separate_process"])
	}
	cpu, _ := r["cpu"].(map[string]any)
	if got, _ := cpu["server_cpu_pct"].(float64); got <= 0 {
		t.Errorf("cpu = %v, want the child's CPU as server_cpu_pct", r["cpu"])
	}
}

func TestFanout(t *testing.T) {
	t.Parallel()
	reps := runBench(t, "fanout", "-url", startServer(t), "-watchers", "20", "-writes", "20", "-rate", "100")
	want(t, reps["fanout"], map[string]float64{
		"connected": 20, "writes_acked": 20, "deliveries_expected": 400, "deliveries": 400,
		"lost_by_seq": 0, "lost_by_rev": 0, "duplicated_by_seq": 0, "duplicated_by_rev": 0,
		"out_of_order": 0, "rev_seq_mismatch": 0, "unexpected_events": 0,
	})
}

func TestRooms(t *testing.T) {
	t.Parallel()
	reps := runBench(t, "rooms", "-url", startServer(t), "-rooms", "20", "-concurrency", "5")
	want(t, reps["rooms"], map[string]float64{"completed": 20, "failed": 0, "delete_errors": 0})
	positive(t, reps["rooms"], "rooms_per_s")
}

func TestIdle(t *testing.T) {
	t.Parallel()
	reps := runBench(t, "idle", "-url", startServer(t), "-watchers", "50", "-settle", "0s")
	want(t, reps["idle"], map[string]float64{"watchers": 50, "connected": 50, "rooms": 25, "server_watchers_gauge": 50})
	if reps["idle"]["watchers_dropped"] != nil {
		t.Errorf("watchers_dropped = %v, want none", reps["idle"]["watchers_dropped"])
	}
}

func TestAll(t *testing.T) {
	t.Parallel()
	reps := runBench(t, "all", "-url", startServer(t),
		"-write.writers", "2", "-write.duration", "300ms", "-write.reference=false",
		"-fanout.watchers", "5", "-fanout.writes", "5", "-fanout.rate", "100",
		"-rooms.rooms", "5", "-idle.watchers", "10", "-idle.settle", "0s")
	for _, name := range []string{"write", "fanout", "rooms", "idle"} {
		if reps[name] == nil {
			t.Errorf("no JSON line for %s", name)
		}
	}
	want(t, reps["fanout"], map[string]float64{"deliveries": 25, "lost_by_seq": 0, "duplicated_by_seq": 0})
}

func TestRunRefusesRemoteTargets(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"http://10.0.0.1:8080", "http://example.com", "http://192.168.1.2:80"} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), []string{"write", "-url", url, "-duration", "100ms"}, func(string) string { return "" }, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("run against %s: err = %v, want a refusal naming loopback", url, err)
		}
		if stdout.Len() > 0 {
			t.Errorf("run against %s printed %q, want nothing", url, &stdout)
		}
	}
}

func TestRunRejectsUnboundedFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"write", "-duration", "2h"},
		{"write", "-deadline", "0s"},
		{"write", "-writers", "0"},
		{"fanout", "-watchers", "100000", "-writes", "1000"},
		{"fanout", "-rate", "0"},
		{"rooms", "-rooms", "0"},
		{"nosuch"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr); err == nil {
			t.Errorf("run %v: err = nil, want a refusal", args)
		}
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SIGBENCH_URL": "http://10.9.9.9:1"}
	err := run(t.Context(), []string{"write"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "10.9.9.9") {
		t.Errorf("err = %v, want the target from SIGBENCH_URL refused", err)
	}
}
