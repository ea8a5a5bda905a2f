package bolt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
	bbolt "go.etcd.io/bbolt"
)

// The crash test re-runs this test binary as a child that writes under
// concurrent load and reports each acknowledged write on stdout; the parent
// SIGKILLs it at a random moment, then checks the file.
const (
	crashDBEnv    = "SIGBASE_CRASH_DB"
	crashRoundEnv = "SIGBASE_CRASH_ROUND"
	// crashLogOnlyEnv set: the child's batch never reaches bbolt before the
	// kill, so everything it acknowledged is in the log only.
	crashLogOnlyEnv = "SIGBASE_CRASH_LOG_ONLY"
	crashRounds     = 10
	crashWriters    = 8
)

// crashValue is what writer w writes to room crash<w%4>, key w<w>: values
// only grow, across rounds too.
type crashValue struct {
	Round int `json:"round"`
	N     int `json:"n"`
}

func (v crashValue) less(w crashValue) bool {
	return v.Round < w.Round || v.Round == w.Round && v.N < w.N
}

// TestCrashChild is the child: it only runs under TestCrash.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashDBEnv)
	if path == "" {
		t.Skip("the child process of TestCrash")
	}
	round, _ := strconv.Atoi(os.Getenv(crashRoundEnv))
	tune := defaultTuning()
	if os.Getenv(crashLogOnlyEnv) != "" {
		tune.commitInterval, tune.commitLogBytes, tune.commitMutations = time.Hour, tune.logBytes, 1<<30
	}
	s, err := store.New(store.Options{OpenTimeout: 10 * time.Second}, func(h *store.Hub, opts store.Options) (store.Engine, error) {
		return open(path, h, opts, tune)
	})
	if err != nil {
		fmt.Printf("ERR open: %v\n", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format, args...) // unbuffered: a line is out once acknowledged
	}
	say("READY\n")
	for w := range crashWriters {
		go func() {
			room, key := fmt.Sprintf("crash%d", w%4), fmt.Sprintf("w%d", w)
			for n := 0; ; n++ {
				body, _ := json.Marshal(crashValue{round, n})
				var res store.Result
				var err error
				if n%3 == 2 { // a room PATCH names the same key
					res, err = s.Patch(t.Context(), store.Path{Room: room}, []byte(`{"`+key+`":`+string(body)+`}`), store.Cond{})
				} else {
					res, err = s.Put(t.Context(), store.Path{Room: room, Key: key}, body, store.Cond{})
				}
				if err != nil {
					say("ERR %s/%s: %v\n", room, key, err)
					return
				}
				say("ACK %s %s %d %d %d\n", room, key, round, n, res.Rev)
			}
		}()
	}
	select {} // until killed
}

type crashAck struct {
	value crashValue
	rev   uint64
}

func TestCrash(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "crash.db")
	acked := map[store.Path]crashAck{} // the latest acknowledged write of each key
	var committed uint64               // the revision found after the previous crash
	total := 0
	for round := 1; round <= crashRounds; round++ {
		acks := runCrashChild(t, path, round, time.Duration(50+rand.IntN(250))*time.Millisecond)
		if len(acks) == 0 {
			t.Fatalf("round %d: no write acknowledged", round)
		}
		seen := map[uint64]bool{}
		for at, a := range acks {
			for _, one := range a {
				if one.rev <= committed || seen[one.rev] {
					t.Errorf("round %d: %s acknowledged at revision %d, reused (previous rounds reached %d)", round, at, one.rev, committed)
				}
				seen[one.rev] = true
				total++
				if acked[at].value.less(one.value) {
					acked[at] = one
				}
			}
		}
		checkBolt(t, path)

		s := openPath(t, path, store.Options{})
		rev := s.Stats().Revision
		for at, a := range acked {
			v, err := s.Get(at)
			if err != nil {
				t.Fatal(err)
			}
			var got crashValue
			if err := json.Unmarshal(v.Data, &got); err != nil {
				t.Fatalf("round %d: %s = %s: %v", round, at, v.Data, err)
			}
			if got.less(a.value) || v.Rev < a.rev || v.Rev > rev {
				t.Errorf("round %d: %s = %+v rev %d, acknowledged %+v at rev %d (head %d)", round, at, got, v.Rev, a.value, a.rev, rev)
			}
		}
		for at, a := range acks {
			for _, one := range a {
				if one.rev > rev {
					t.Errorf("round %d: %s acknowledged at revision %d, the file holds up to %d", round, at, one.rev, rev)
				}
			}
		}
		if rev < committed {
			t.Errorf("round %d: revision %d after reopen, below %d before", round, rev, committed)
		}
		committed = rev
		// The revision counter continues after a crash too.
		if res := s.put(t, "after/k", strconv.Itoa(round)); res.Rev != rev+1 {
			t.Errorf("round %d: first write after reopen at %d, want %d", round, res.Rev, rev+1)
		}
		committed = rev + 1
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		checkBolt(t, path)
	}
	t.Logf("%d rounds, %d acknowledged writes verified, last revision %d", crashRounds, total, committed)
}

// runCrashChild runs the child for about d after it is ready, SIGKILLs it and
// returns the writes it acknowledged, in order, per key.
func runCrashChild(t *testing.T, path string, round int, d time.Duration, env ...string) map[store.Path][]crashAck {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDBEnv+"="+path, crashRoundEnv+"="+strconv.Itoa(round))
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	acks := map[store.Path][]crashAck{}
	parse := func(line string) {
		f := strings.Fields(line)
		switch {
		case len(f) == 6 && f[0] == "ACK":
			round, _ := strconv.Atoi(f[3])
			n, _ := strconv.Atoi(f[4])
			rev, _ := strconv.ParseUint(f[5], 10, 64)
			at := store.Path{Room: f[1], Key: f[2]}
			acks[at] = append(acks[at], crashAck{crashValue{round, n}, rev})
		case strings.HasPrefix(line, "ERR"):
			t.Errorf("round %d child: %s", round, line)
		}
	}
	ready := time.After(30 * time.Second)
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("round %d: child ended before it was ready: %s", round, stderr.String())
			}
			if line == "READY" {
				break wait
			}
			parse(line)
		case <-ready:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: child not ready after 30s: %s", round, stderr.String())
		}
	}
	// The kill comes d after the first acknowledgement, so that a slow
	// start (the race detector, a loaded machine) still kills under load.
	var kill <-chan time.Time
	noAck := time.After(30 * time.Second)
loop:
	for {
		select {
		case line := <-lines:
			parse(line)
			if kill == nil && strings.HasPrefix(line, "ACK") {
				kill = time.After(d)
			}
		case <-kill:
			break loop
		case <-noAck:
			if kill == nil {
				break loop // the caller reports the round without acknowledgements
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	for line := range lines { // lines written before the kill were acknowledged
		parse(line)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("round %d: child exited with %v, want killed: %s", round, err, stderr.String())
	}
	return acks
}

// checkBolt runs bbolt's consistency check on the closed file.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("bbolt open: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
