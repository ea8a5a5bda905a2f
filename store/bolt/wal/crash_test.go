package wal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// crashEnv switches the test binary into crashChild, which TestCrash kills;
// reuseEnv into reuseChild, which TestCrashReused kills.
const (
	crashEnv = "SIGBASE_WAL_CRASH_CHILD"
	reuseEnv = "SIGBASE_WAL_REUSE_CHILD" // path,first group
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		os.Exit(0)
	}
	if arg := os.Getenv(reuseEnv); arg != "" {
		reuseChild(arg)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startChild runs the test binary as a child with env added, and returns
// it with its stdout and the buffer its stderr goes to.
func startChild(t *testing.T, env string) (*exec.Cmd, io.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out, stderr
}

// crashRecord is record i of the group numbered seq (of k records).
func crashRecord(seq uint64, i, k int) []byte {
	p := make([]byte, 12, 12+40+int(seq*31+uint64(i))%200)
	binary.LittleEndian.PutUint64(p, seq)
	binary.LittleEndian.PutUint16(p[8:], uint16(i))
	binary.LittleEndian.PutUint16(p[10:], uint16(k))
	for len(p) < cap(p) {
		p = append(p, byte(seq)+byte(i))
	}
	return p
}

func groupSize(seq uint64) int { return 1 + int(seq%7) }

// crashChild appends groups, numbered on from the log's last, and prints
// each group's number once Append has returned.
func crashChild(path string) {
	l, recs, err := Open(path, Options{MaxBytes: 1 << 30, Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var seq uint64
	if len(recs) > 0 {
		seq = binary.LittleEndian.Uint64(recs[len(recs)-1])
	}
	deadline := time.Now().Add(2 * time.Second)
	for n := 0; n < 20000 && time.Now().Before(deadline); n++ {
		seq++
		appendGroup(l, seq)
		fmt.Fprintf(os.Stdout, "%d\n", seq)
	}
}

// appendGroup appends group seq, or ends the child process.
func appendGroup(l *Log, seq uint64) {
	k := groupSize(seq)
	group := make([][]byte, 0, k)
	for i := 0; i < k; i++ {
		group = append(group, crashRecord(seq, i, k))
	}
	if err := l.Append(group...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// TestCrash kills a writer at a random point, a few times over one log:
// every group it acknowledged must be there, whole, in order, no gaps.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "wal")
	acked := map[uint64]bool{}
	var lastAcked uint64
	for round := 0; round < 3; round++ {
		cmd, out, stderr := startChild(t, crashEnv+"="+path)
		timer := time.AfterFunc(300*time.Millisecond, func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			seq, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			acked[seq] = true
			lastAcked = max(lastAcked, seq)
			n++
		}
		err := cmd.Wait()
		timer.Stop()
		if stderr.Len() > 0 {
			t.Fatalf("child: %s", stderr.Bytes())
		}
		if n == 0 {
			t.Fatalf("round %d: the child acknowledged nothing (%v)", round, err)
		}
		t.Logf("round %d: %d groups acknowledged, child %v", round, n, err)

		l, recs, err := Open(path, Options{MaxBytes: 1 << 30, Logger: quiet})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		l.Close()
		checkCrashLog(t, recs, acked, lastAcked)
	}
}

func checkCrashLog(t *testing.T, recs [][]byte, acked map[uint64]bool, lastAcked uint64) {
	t.Helper()
	checkGroups(t, recs, acked, lastAcked, 1)
}

// checkGroups checks that recs are whole groups numbered on from first (the
// last one may be cut short if it was not acknowledged) and hold every
// acknowledged group.
func checkGroups(t *testing.T, recs [][]byte, acked map[uint64]bool, lastAcked, first uint64) {
	t.Helper()
	seen := map[uint64]bool{}
	want := first // the group expected next
	for i := 0; i < len(recs); {
		seq := binary.LittleEndian.Uint64(recs[i])
		if seq != want {
			t.Fatalf("record %d: group %d, want %d", i, seq, want)
		}
		k := groupSize(seq)
		j := 0
		for ; j < k && i < len(recs) && binary.LittleEndian.Uint64(recs[i]) == seq; j, i = j+1, i+1 {
			if !bytes.Equal(recs[i], crashRecord(seq, j, k)) {
				t.Fatalf("group %d record %d differs", seq, j)
			}
		}
		if j < k && acked[seq] {
			t.Fatalf("acknowledged group %d has %d of its %d records", seq, j, k)
		}
		seen[seq] = true
		want++
	}
	for seq := range acked {
		if !seen[seq] {
			t.Fatalf("acknowledged group %d is missing (last acknowledged %d, log ends at %d)", seq, lastAcked, want-1)
		}
	}
}

// reuseChild resets the log it opens, then appends groups numbered on from
// first, with a Reset after every 40th: it prints "a N" once group N is
// durable, "r N" before the Reset that follows group N and "R" after it.
func reuseChild(arg string) {
	var path string
	var seq uint64
	if _, err := fmt.Sscanf(arg, "%s %d", &path, &seq); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l, _, err := Open(path, Options{Logger: quiet})
	if err == nil {
		err = l.Reset()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("R")
	seq--
	deadline := time.Now().Add(2 * time.Second)
	for n := 1; n < 20000 && time.Now().Before(deadline); n++ {
		seq++
		appendGroup(l, seq)
		fmt.Printf("a %d\n", seq)
		if n%40 == 0 {
			fmt.Printf("r %d\n", seq)
			if err := l.Reset(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Println("R")
		}
	}
}

// TestCrashReused kills a writer that resets its log every 40 groups, so
// that new frames overwrite old ones in place: after each crash the log
// holds exactly the groups since the last Reset, every acknowledged one
// whole, and nothing of the older epochs. A crash inside a Reset may leave
// the groups before it or none.
func TestCrashReused(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "wal")
	next := uint64(1)
	resets := 0
	for round := 0; round < 4; round++ {
		cmd, out, stderr := startChild(t, fmt.Sprintf("%s=%s %d", reuseEnv, path, next))
		timer := time.AfterFunc(time.Duration(150+100*round)*time.Millisecond, func() { cmd.Process.Kill() })
		// The epoch's groups: since the last completed Reset; during an
		// unfinished one, also the groups of the epoch before it.
		acked := map[uint64]bool{}
		var lastAcked, epochFirst, prevFirst uint64
		inReset, reset := false, false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var n uint64
			switch line := sc.Text(); {
			case line == "R":
				if !inReset && reset {
					t.Fatalf("child said R twice")
				}
				inReset, reset = false, true
				acked, epochFirst = map[uint64]bool{}, lastAcked+1
				if lastAcked == 0 {
					epochFirst = next
				}
				resets++
			case strings.HasPrefix(line, "r "):
				inReset, prevFirst = true, epochFirst
			case strings.HasPrefix(line, "a "):
				if _, err := fmt.Sscanf(line, "a %d", &n); err != nil {
					t.Fatalf("child said %q", line)
				}
				acked[n], lastAcked = true, n
			default:
				t.Fatalf("child said %q", line)
			}
		}
		cmd.Wait()
		timer.Stop()
		if stderr.Len() > 0 {
			t.Fatalf("child: %s", stderr.Bytes())
		}
		if !reset || lastAcked == 0 {
			t.Fatalf("round %d: the child acknowledged nothing", round)
		}
		l, recs, err := Open(path, Options{Logger: quiet})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		l.Close()
		switch {
		case inReset && len(recs) == 0: // the Reset got there
		case inReset:
			checkGroups(t, recs, acked, lastAcked, prevFirst)
		default:
			checkGroups(t, recs, acked, lastAcked, epochFirst)
		}
		t.Logf("round %d: %d records after the crash, last acknowledged group %d, in a reset: %v", round, len(recs), lastAcked, inReset)
		next = lastAcked + 100
	}
	if resets < 8 {
		t.Fatalf("only %d resets: the log was hardly reused", resets)
	}
}
