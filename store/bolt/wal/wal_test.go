package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var tab = crc32.MakeTable(crc32.Castagnoli)

// encode builds a log file of epoch 1 (a new log's) from the format's
// description, independently of Append.
func encode(payloads ...[]byte) []byte {
	return encodeEpoch(1, payloads...)
}

func encodeEpoch(epoch uint32, payloads ...[]byte) []byte {
	out := []byte("SGWAL\x00\x00\x02")
	out = binary.LittleEndian.AppendUint32(out, epoch)
	out = binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, tab))
	return append(out, frames(epoch, payloads...)...)
}

func frames(epoch uint32, payloads ...[]byte) []byte {
	var out []byte
	for _, p := range payloads {
		var h [12]byte
		binary.LittleEndian.PutUint32(h[:4], uint32(len(p)))
		binary.LittleEndian.PutUint32(h[4:8], epoch^0x9e3779b9)
		binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(append(h[:8:8], p...), tab))
		out = append(out, h[:]...)
		out = append(out, p...)
	}
	return out
}

// encodeV1 builds a version 1 log file.
func encodeV1(payloads ...[]byte) []byte {
	out := []byte("SGWAL\x00\x00\x01")
	for _, p := range payloads {
		var h [8]byte
		binary.LittleEndian.PutUint32(h[:4], uint32(len(p)))
		binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(append(h[:4:4], p...), tab))
		out = append(out, h[:]...)
		out = append(out, p...)
	}
	return out
}

func open(t testing.TB, path string, opts Options) (*Log, [][]byte) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	l, recs, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, recs
}

func equal(t testing.TB, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func bs(ss ...string) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, []byte(s))
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal")
	l, recs := open(t, path, Options{})
	equal(t, recs, nil)
	groups := [][][]byte{bs("a"), bs("bb", "ccc", "dddd"), bs(strings.Repeat("e", 5000), "f")}
	var want [][]byte
	for _, g := range groups {
		if err := l.Append(g...); err != nil {
			t.Fatal(err)
		}
		want = append(want, g...)
	}
	if err := l.Append(); err != nil { // an empty group is a no-op
		t.Fatal(err)
	}
	l.Close()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, encode(want...)) {
		t.Fatal("file bytes differ from the documented format")
	}

	l, recs = open(t, path, Options{})
	equal(t, recs, want)
	if l.Size() != int64(len(raw)) {
		t.Fatalf("Size = %d, want %d", l.Size(), len(raw))
	}
	if err := l.Reset(); err != nil {
		t.Fatal(err)
	}
	// The file is kept for reuse; its old frames are of epoch 1.
	if l.Size() != headerSize || fileSize(t, path) != int64(len(raw)) {
		t.Fatalf("after Reset: Size %d, file %d, want %d and %d", l.Size(), fileSize(t, path), headerSize, len(raw))
	}
	l.Close()

	l, recs = open(t, path, Options{})
	equal(t, recs, nil)
	if err := l.Append(bs("g", "h")...); err != nil {
		t.Fatal(err)
	}
	l.Close()
	raw2, _ := os.ReadFile(path)
	if want := encodeEpoch(2, bs("g", "h")...); !bytes.Equal(raw2[:len(want)], want) || len(raw2) != len(raw) {
		t.Fatal("after Reset the frames did not overwrite the old ones in place with epoch 2")
	}
	_, recs = open(t, path, Options{})
	equal(t, recs, bs("g", "h"))
}

// TestReuse: after Reset, new frames overwrite old ones; what is left of the
// old ones is never read back, a torn overwrite is dropped, and damage to a
// new frame that is not the last is refused.
func TestReuse(t *testing.T) {
	old := bs(strings.Repeat("o", 40), strings.Repeat("p", 300), "q", strings.Repeat("r", 77))
	path := filepath.Join(t.TempDir(), "wal")
	l, _ := open(t, path, Options{})
	if err := l.Append(old...); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		if err := l.Reset(); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(old...); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Reset(); err != nil {
		t.Fatal(err)
	}
	newer := bs("n1", "n2")
	if err := l.Append(newer...); err != nil {
		t.Fatal(err)
	}
	l.Close()
	raw, _ := os.ReadFile(path)
	if len(raw) != len(encode(old...)) {
		t.Fatalf("file is %d bytes, want the first epoch's %d", len(raw), len(encode(old...)))
	}
	l, recs := open(t, path, Options{})
	equal(t, recs, newer)
	l.Close()

	// A torn third frame: its header and part of its payload over old bytes.
	end := len(encodeEpoch(5, newer...))
	torn := frames(5, []byte(strings.Repeat("t", 100)))
	for _, cut := range []int{12, 13, 60, len(torn) - 1} {
		buf := slices.Clone(raw)
		copy(buf[end:], torn[:cut])
		if err := os.WriteFile(path, buf, 0o600); err != nil {
			t.Fatal(err)
		}
		var logged bytes.Buffer
		l, recs := open(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		equal(t, recs, newer)
		if w := fmt.Sprintf("offset=%d", end); !strings.Contains(logged.String(), w) {
			t.Fatalf("cut %d: warning %q does not say %q", cut, logged.String(), w)
		}
		if err := l.Append([]byte("after")); err != nil {
			t.Fatal(err)
		}
		l.Close()
		_, recs = open(t, path, Options{})
		equal(t, recs, append(slices.Clone(newer), []byte("after")))
	}

	// A flipped epoch or payload byte in the first new frame: the second is
	// still there, so that is damage, not the end.
	for _, at := range []int{headerSize + 5, headerSize + 12} {
		buf := slices.Clone(raw)
		buf[at] ^= 0x10
		if err := os.WriteFile(path, buf, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Open(path, Options{Logger: quiet}); !isCorrupt(err, headerSize) {
			t.Fatalf("byte %d flipped: %v, want CorruptError at %d", at, err, headerSize)
		}
	}
}

// TestEpochWrap: a Reset past the last epoch truncates the file and starts
// again at 1, so no old frame can carry the new epoch.
func TestEpochWrap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal")
	if err := os.WriteFile(path, encodeEpoch(math.MaxUint32, bs("x", "y")...), 0o600); err != nil {
		t.Fatal(err)
	}
	l, recs := open(t, path, Options{})
	equal(t, recs, bs("x", "y"))
	if err := l.Reset(); err != nil {
		t.Fatal(err)
	}
	if fileSize(t, path) != headerSize || l.epoch != 1 {
		t.Fatalf("after the last epoch: file %d bytes, epoch %d; want %d and 1", fileSize(t, path), l.epoch, headerSize)
	}
	if err := l.Append([]byte("z")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, recs = open(t, path, Options{})
	equal(t, recs, bs("z"))

	// The epoch whose frames would carry a zero epoch field is skipped.
	if err := os.WriteFile(path, encodeEpoch(frameSalt-1, bs("x")...), 0o600); err != nil {
		t.Fatal(err)
	}
	l, _ = open(t, path, Options{})
	if err := l.Reset(); err != nil || l.epoch != frameSalt+1 {
		t.Fatalf("Reset from epoch %#x: epoch %#x, %v; want %#x", frameSalt-1, l.epoch, err, frameSalt+1)
	}
}

// TestVersion1: a log from before reuse is replayed, refuses appends until
// Reset, and Reset makes it version 2.
func TestVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal")
	v1 := encodeV1(bs("old", "older")...)
	if err := os.WriteFile(path, append(v1, 0, 0, 0), 0o600); err != nil { // a zero tail, torn by v1's rules
		t.Fatal(err)
	}
	l, recs := open(t, path, Options{})
	equal(t, recs, bs("old", "older"))
	if fileSize(t, path) != int64(len(v1)) {
		t.Fatal("the version 1 torn tail was not truncated")
	}
	if err := l.Append([]byte("x")); !errors.Is(err, ErrNeedsReset) {
		t.Fatalf("Append on a version 1 log: %v, want ErrNeedsReset", err)
	}
	if err := l.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append([]byte("new")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	raw, _ := os.ReadFile(path)
	if !bytes.Equal(raw, encode([]byte("new"))) {
		t.Fatalf("after Reset the file is %x, want version 2 with one record", raw)
	}
	bad := encodeV1(bs("a", "b")...)
	bad[len(encodeV1([]byte("a")))-1] ^= 1
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(path, Options{Logger: quiet}); !isCorrupt(err, 8) {
		t.Fatalf("a flipped byte in a version 1 log: %v, want CorruptError at 8", err)
	}
}

// TestTornTail cuts the file at every offset inside the last frame.
func TestTornTail(t *testing.T) {
	first := bs("one", "two two")
	last := []byte("the last record, cut short")
	full := encode(append(slices.Clone(first), last)...)
	good := len(encode(first...))
	dir := t.TempDir()
	for cut := good + 1; cut < len(full); cut++ {
		path := filepath.Join(dir, fmt.Sprint(cut))
		if err := os.WriteFile(path, full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		var logged bytes.Buffer
		l, recs := open(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		equal(t, recs, first)
		// A cut inside the frame header leaves nothing of the epoch to warn of.
		if w := fmt.Sprintf("offset=%d", good); cut-good >= frameHeaderSize && !strings.Contains(logged.String(), w) {
			t.Fatalf("cut %d: warning %q does not say %q", cut, logged.String(), w)
		}
		if err := l.Append(bs("new", "newer")...); err != nil {
			t.Fatal(err)
		}
		l.Close()
		_, recs = open(t, path, Options{})
		equal(t, recs, append(slices.Clone(first), bs("new", "newer")...))
	}
}

func TestZeroTail(t *testing.T) {
	recs := bs("x", "yy")
	for _, zeros := range []int{1, 7, 8, 4096} {
		path := filepath.Join(t.TempDir(), "wal")
		raw := encode(recs...)
		if err := os.WriteFile(path, append(slices.Clone(raw), make([]byte, zeros)...), 0o600); err != nil {
			t.Fatal(err)
		}
		l, got := open(t, path, Options{})
		equal(t, got, recs)
		if l.Size() != int64(len(raw)) {
			t.Fatalf("%d zeros: the log ends at %d, want %d", zeros, l.Size(), len(raw))
		}
	}
}

func TestShortHeader(t *testing.T) {
	hdr := encode()
	for n := 0; n < len(hdr); n++ {
		for _, content := range [][]byte{hdr[:n], make([]byte, n)} {
			path := filepath.Join(t.TempDir(), "wal")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			l, recs := open(t, path, Options{})
			equal(t, recs, nil)
			if err := l.Append([]byte("z")); err != nil {
				t.Fatal(err)
			}
			l.Close()
			_, recs = open(t, path, Options{})
			equal(t, recs, bs("z"))
		}
	}
	path := filepath.Join(t.TempDir(), "wal")
	if err := os.WriteFile(path, []byte("SGX"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(path, Options{Logger: quiet}); !isCorrupt(err, 0) {
		t.Fatalf("a short non-header file: %v, want CorruptError at 0", err)
	}
}

func isCorrupt(err error, off int64) bool {
	var ce *CorruptError
	return errors.As(err, &ce) && ce.Offset == off
}

// TestFlippedByte flips bits of every byte of a small log (each single bit,
// and all eight).
// The rule (package doc): corruption at the frame's start (0 for the file
// header), except in the last frame, which reads as a torn tail.
func TestFlippedByte(t *testing.T) {
	recs := bs("a", "bcdef", "ghi")
	raw := encode(recs...)
	var starts []int
	for off := headerSize; off < len(raw); off += frameHeaderSize + int(binary.LittleEndian.Uint32(raw[off:])) {
		starts = append(starts, off)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "wal")
	buf := make([]byte, len(raw))
	torn := 0
	for i := range raw {
		frame, start := -1, int64(0)
		for k, s := range starts {
			if i >= s {
				frame, start = k, int64(s)
			}
		}
		for _, x := range []int{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff} {
			copy(buf, raw)
			buf[i] ^= byte(x)
			if err := os.WriteFile(path, buf, 0o600); err != nil {
				t.Fatal(err)
			}
			l, got, err := Open(path, Options{Logger: quiet})
			if frame == len(starts)-1 {
				torn++
				if err != nil {
					t.Fatalf("byte %d ^ %#x: %v, want a torn tail", i, x, err)
				}
				if l.Size() != start {
					t.Fatalf("byte %d ^ %#x: the log ends at %d, want %d", i, x, l.Size(), start)
				}
				l.Close()
				equal(t, got, recs[:frame])
				continue
			}
			if err == nil {
				l.Close()
				t.Fatalf("byte %d ^ %#x: Open succeeded with %q, want CorruptError at %d", i, x, got, start)
			}
			if !isCorrupt(err, start) {
				t.Fatalf("byte %d ^ %#x: %v, want CorruptError at %d", i, x, err, start)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", start)) {
				t.Fatalf("error %q names neither file nor offset", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, buf) {
				t.Fatalf("byte %d ^ %#x: a corrupt file was changed", i, x)
			}
		}
	}
	if torn == 0 {
		t.Fatal("no flip exercised the last frame")
	}
}

// TestMiddleLengthPastEOF: a middle frame whose length points past the end
// of the file must be an error, not a truncation of the frames after it.
func TestMiddleLengthPastEOF(t *testing.T) {
	recs := bs("first", "middle", "last one")
	raw := encode(recs...)
	mid := len(encode(recs[0]))
	binary.LittleEndian.PutUint32(raw[mid:], uint32(len(raw)))
	path := filepath.Join(t.TempDir(), "wal")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(path, Options{Logger: quiet}); !isCorrupt(err, int64(mid)) {
		t.Fatalf("Open: %v, want CorruptError at %d", err, mid)
	}
	if fileSize(t, path) != int64(len(raw)) {
		t.Fatal("the file was truncated")
	}
}

func TestErrFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal")
	const max = headerSize + 2*(frameHeaderSize+10)
	l, _ := open(t, path, Options{MaxBytes: max})
	p := bytes.Repeat([]byte("p"), 10)
	if err := l.Append(p); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(p, p); !errors.Is(err, ErrFull) {
		t.Fatalf("Append over the limit: %v, want ErrFull", err)
	}
	if err := l.Append(p); err != nil {
		t.Fatal(err)
	}
	if l.Size() != max || fileSize(t, path) != max {
		t.Fatalf("Size %d, file %d, want %d", l.Size(), fileSize(t, path), max)
	}
	if err := l.Append([]byte("q")); !errors.Is(err, ErrFull) {
		t.Fatalf("Append over the limit: %v, want ErrFull", err)
	}
	if fileSize(t, path) != max {
		t.Fatal("ErrFull wrote something")
	}
	if err := l.Append(bytes.Repeat([]byte("r"), max)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a group that never fits: %v, want ErrTooLarge", err)
	}
	if err := l.Append([]byte{}); !errors.Is(err, ErrEmptyRecord) {
		t.Fatalf("an empty record: %v, want ErrEmptyRecord", err)
	}
	l.Close()

	l, recs := open(t, path, Options{MaxBytes: max})
	equal(t, recs, [][]byte{p, p})
	if err := l.Append(p); !errors.Is(err, ErrFull) {
		t.Fatalf("after reopen: %v, want ErrFull", err)
	}
	if err := l.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(p, p); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
	l.Close()
	_, recs = open(t, path, Options{MaxBytes: max})
	equal(t, recs, [][]byte{p, p})
}

// TestPoisoned: after a failed write every call returns that error.
func TestPoisoned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wal")
	l, _ := open(t, path, Options{})
	if err := l.Append([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	l.f.Close() // the next write fails
	err := l.Append([]byte("lost"))
	if err == nil {
		t.Fatal("Append on a closed file succeeded")
	}
	if err2 := l.Append([]byte("again")); err2 != err {
		t.Fatalf("second Append: %v, want the first error %v", err2, err)
	}
	if err2 := l.Reset(); err2 != err {
		t.Fatalf("Reset: %v, want the first error %v", err2, err)
	}
}

func TestClosed(t *testing.T) {
	l, _ := open(t, filepath.Join(t.TempDir(), "wal"), Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// BenchmarkAppend32 appends groups of 32 records of 300 bytes, with a Reset
// at every MiB of log, as the engine's checkpoints do.
func BenchmarkAppend32(b *testing.B) {
	l, _ := open(b, filepath.Join(b.TempDir(), "wal"), Options{})
	group := make([][]byte, 32)
	for i := range group {
		group[i] = bytes.Repeat([]byte{byte(i + 1)}, 300)
	}
	b.SetBytes(32 * 300)
	b.ReportAllocs()
	for b.Loop() {
		if l.Size() > 1<<20 {
			if err := l.Reset(); err != nil {
				b.Fatal(err)
			}
		}
		if err := l.Append(group...); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzOpen: Open never panics, and what it returns re-encodes to a prefix
// of the input, which is what the file is left holding.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{})
	f.Add(encode())
	f.Add(encode(bs("a", "bc")...))
	full := encode(bs("abc", "defgh", "ijklmnop")...)
	f.Add(full[:len(full)-3])
	f.Add(append(slices.Clone(full), make([]byte, 20)...))
	flipped := slices.Clone(full)
	flipped[len(encode(bs("abc")...))+1] ^= 0x40
	f.Add(flipped)
	f.Add(encodeV1(bs("a", "bc")...))
	reused := slices.Clone(full)
	copy(reused, encodeEpoch(2, bs("xy")...))
	f.Add(reused)
	dir := f.TempDir()
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		n++
		path := filepath.Join(dir, fmt.Sprint(n))
		defer os.Remove(path)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, recs, err := Open(path, Options{Logger: quiet})
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("not a CorruptError: %v", err)
			}
			return
		}
		size := l.Size()
		l.Close()
		// The records re-encode, in the file's epoch, to the file's
		// first Size bytes.
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(data, []byte("SGWAL\x00\x00\x01")) {
			if enc := encodeV1(recs...); !bytes.Equal(after, enc) {
				t.Fatalf("version 1: file left holding %x, records encode to %x", after, enc)
			}
			return
		}
		if len(data) < headerSize {
			if len(recs) != 0 || !bytes.Equal(after, encode()) {
				t.Fatalf("a file shorter than the header gave %d records and became %x", len(recs), after)
			}
			return
		}
		enc := encodeEpoch(binary.LittleEndian.Uint32(data[8:]), recs...)
		if int64(len(enc)) != size || !bytes.HasPrefix(data, enc) || !bytes.HasPrefix(after, enc) {
			t.Fatalf("records re-encode to %x (Size %d), not a prefix of %x", enc, size, data)
		}
	})
}
