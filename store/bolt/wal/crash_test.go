package wal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// crashEnv switches the test binary into crashChild, which TestCrash kills.
const crashEnv = "SIGBASE_WAL_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		os.Exit(0)
	}
	os.Exit(m.Run())
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
	group := make([][]byte, 0, 8)
	for n := 0; n < 20000 && time.Now().Before(deadline); n++ {
		seq++
		k := groupSize(seq)
		group = group[:0]
		for i := 0; i < k; i++ {
			group = append(group, crashRecord(seq, i, k))
		}
		if err := l.Append(group...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stdout, "%d\n", seq)
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
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
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
		err = cmd.Wait()
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
	seen := map[uint64]bool{}
	var want uint64 = 1 // the group expected next
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
