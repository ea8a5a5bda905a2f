package bolt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/bolt/wal"
	bbolt "go.etcd.io/bbolt"
)

// boltSequence is the last revision the bbolt file itself holds (closed
// file, read-only): what the log does not add.
func boltSequence(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("bbolt open: %v", err)
	}
	defer db.Close()
	var seq uint64
	err = db.View(func(tx *bbolt.Tx) error { seq = tx.Bucket(bucketMeta).Sequence(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// checkAcked opens the store at path and checks that every acknowledged
// write is there, with its revision or a later one; it returns the head.
func checkAcked(t *testing.T, path string, acks map[store.Path][]crashAck) uint64 {
	t.Helper()
	s := openPath(t, path, store.Options{})
	defer s.Close()
	head := s.Stats().Revision
	for at, a := range acks {
		last := a[len(a)-1]
		v, err := s.Get(at)
		if err != nil {
			t.Fatal(err)
		}
		var got crashValue
		if err := json.Unmarshal(v.Data, &got); err != nil {
			t.Fatalf("%s = %s: %v", at, v.Data, err)
		}
		if got.less(last.value) || v.Rev < last.rev {
			t.Errorf("%s = %+v rev %d, acknowledged %+v at rev %d", at, got, v.Rev, last.value, last.rev)
		}
		for _, one := range a {
			if one.rev > head {
				t.Errorf("%s acknowledged at revision %d, the store holds up to %d", at, one.rev, head)
			}
		}
	}
	return head
}

func countAcks(acks map[store.Path][]crashAck) (n int, maxRev uint64) {
	for _, a := range acks {
		n += len(a)
		maxRev = max(maxRev, a[len(a)-1].rev)
	}
	return n, maxRev
}

// A crash between the log's sync and bbolt's commit: every acknowledged
// write is in the log only (bbolt's file does not have them), and opening
// replays them. Then the same with a torn last record appended, as an
// interrupted append leaves it: it is dropped, nothing acknowledged is.
func TestCrashBetweenLogAndBolt(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "crash.db")
	for round := 1; round <= 3; round++ {
		before := uint64(0)
		if round > 1 {
			before = boltSequence(t, path)
		}
		acks := runCrashChild(t, path, round, time.Duration(100+50*round)*time.Millisecond, crashLogOnlyEnv+"=1")
		n, maxRev := countAcks(acks)
		if n == 0 {
			t.Fatalf("round %d: no write acknowledged", round)
		}
		checkBolt(t, path)
		if got := boltSequence(t, path); got != before {
			t.Fatalf("round %d: bbolt holds revision %d after the kill, %d before: the writes did not stay in the log", round, got, before)
		}
		if maxRev <= before {
			t.Fatalf("round %d: acknowledged up to %d, bbolt had %d already", round, maxRev, before)
		}
		if round == 3 {
			// A frame header that promises more than the file holds.
			f, err := os.OpenFile(path+".wal", os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, 'P', 1, 5}); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		head := checkAcked(t, path, acks)
		if head < maxRev {
			t.Errorf("round %d: head %d after replay, acknowledged up to %d", round, head, maxRev)
		}
		checkBolt(t, path)
		if got := boltSequence(t, path); got != head {
			t.Errorf("round %d: bbolt holds %d after a clean close, the store said %d", round, got, head)
		}
		t.Logf("round %d: %d acknowledged writes from the log alone, revisions %d..%d", round, n, before+1, maxRev)
	}
}

// A flipped byte inside a logged record is damage, not a torn write: Open
// refuses, naming the log and the offset, and drops nothing; with the byte
// restored, every acknowledged write is there.
func TestCorruptLogRefusesToOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "crash.db")
	acks := runCrashChild(t, path, 1, 150*time.Millisecond, crashLogOnlyEnv+"=1")
	if n, _ := countAcks(acks); n == 0 {
		t.Fatal("no write acknowledged")
	}
	logPath := path + ".wal"
	orig, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(orig) < 64 {
		t.Fatalf("the log holds %d bytes: nothing logged", len(orig))
	}
	const at = 32 // inside the first record's payload (header 16, frame header 12)
	flipped := append([]byte(nil), orig...)
	flipped[at] ^= 0x40
	if err := os.WriteFile(logPath, flipped, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path, store.Options{})
	var ce *wal.CorruptError
	if !errors.As(err, &ce) || ce.Offset != 16 || !strings.Contains(err.Error(), "offset 16") || !strings.Contains(err.Error(), logPath) {
		t.Fatalf("Open with a flipped byte at %d: %v, want a corrupt-log error naming %s at offset 16", at, err, logPath)
	}
	if got, _ := os.ReadFile(logPath); string(got) != string(flipped) {
		t.Fatal("the refused log was changed")
	}
	if err := os.WriteFile(logPath, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	checkAcked(t, path, acks)
	checkBolt(t, path)
}

// A log that reaches its size limit before the batch is due makes the
// writer commit the batch and empty the log, so the log stays under its
// limit; a group larger than the whole log goes to bbolt directly. Nothing
// is lost either way, across a reopen.
func TestLogOverItsLimit(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sigbase.db")
	tune := defaultTuning()
	tune.commitInterval, tune.commitLogBytes, tune.commitMutations = time.Hour, 1<<40, 1<<30
	tune.logBytes = 32 << 10
	var e *engine
	s, err := store.New(store.Options{}, func(h *store.Hub, opts store.Options) (store.Engine, error) {
		var err error
		e, err = open(path, h, opts, tune)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	value := `"` + strings.Repeat("v", 300) + `"`
	var largest int64
	for i := range 400 {
		at := store.Path{Room: fmt.Sprintf("r%d", i%7), Key: fmt.Sprintf("k%d", i)}
		if _, err := s.Put(t.Context(), at, []byte(value), store.Cond{}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		fi, err := os.Stat(path + ".wal")
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, fi.Size())
	}
	if largest > tune.logBytes {
		t.Errorf("the log reached %d bytes, limit %d", largest, tune.logBytes)
	}
	if largest < tune.logBytes/2 {
		t.Errorf("the log reached only %d bytes of %d: the limit was not exercised", largest, tune.logBytes)
	}
	big := `"` + strings.Repeat("b", 40<<10) + `"` // one group larger than the log
	if _, err := s.Put(t.Context(), store.Path{Room: "big", Key: "k"}, []byte(big), store.Cond{}); err != nil {
		t.Fatalf("a write larger than the log: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkBolt(t, path)
	r := openPath(t, path, store.Options{})
	for i := range 400 {
		v := r.get(t, fmt.Sprintf("r%d/k%d", i%7, i))
		if string(v.Data) != value {
			t.Fatalf("r%d/k%d after reopen: %.40s", i%7, i, v.Data)
		}
	}
	if v := r.get(t, "big/k"); string(v.Data) != big {
		t.Fatalf("big/k after reopen: %d bytes", len(v.Data))
	}
}
