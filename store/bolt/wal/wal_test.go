package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// encode builds a log file from the format's description, independently of
// Append.
func encode(payloads ...[]byte) []byte {
	out := []byte("SGWAL\x00\x00\x01")
	tab := crc32.MakeTable(crc32.Castagnoli)
	for _, p := range payloads {
		var h [8]byte
		binary.LittleEndian.PutUint32(h[:4], uint32(len(p)))
		crc := crc32.Checksum(append(h[:4:4], p...), tab)
		binary.LittleEndian.PutUint32(h[4:], crc)
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
	if l.Size() != 8 || fileSize(t, path) != 8 {
		t.Fatalf("after Reset: Size %d, file %d, want 8", l.Size(), fileSize(t, path))
	}
	l.Close()

	l, recs = open(t, path, Options{})
	equal(t, recs, nil)
	if err := l.Append(bs("g", "h")...); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, recs = open(t, path, Options{})
	equal(t, recs, bs("g", "h"))
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
		if got := fileSize(t, path); got != int64(good) {
			t.Fatalf("cut %d: file is %d bytes, want %d", cut, got, good)
		}
		if w := fmt.Sprintf("offset=%d bytes=%d", good, cut-good); !strings.Contains(logged.String(), w) {
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
		_, got := open(t, path, Options{})
		equal(t, got, recs)
		if fileSize(t, path) != int64(len(raw)) {
			t.Fatalf("%d zeros: file not truncated to %d", zeros, len(raw))
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
// header), except a length that makes the last frame run past the end of
// the file, which reads as a torn tail.
func TestFlippedByte(t *testing.T) {
	recs := bs("a", "bcdef", "ghi")
	raw := encode(recs...)
	var starts []int
	for off := 8; off < len(raw); off += 8 + int(binary.LittleEndian.Uint32(raw[off:])) {
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
			// Expected: torn only for the last frame's length pointing past EOF.
			expectTorn := false
			if frame >= 0 && i < int(start)+4 {
				n := int64(binary.LittleEndian.Uint32(buf[start:]))
				// A middle frame's length running past EOF must stay an
				// error, as everything else does.
				expectTorn = n != 0 && n <= MaxPayload &&
					start+8+n > int64(len(buf)) && frame == len(starts)-1
			}
			l, got, err := Open(path, Options{Logger: quiet})
			if expectTorn {
				torn++
				if err != nil {
					t.Fatalf("byte %d ^ %#x: %v, want a torn tail", i, x, err)
				}
				l.Close()
				equal(t, got, recs[:frame])
				if fileSize(t, path) != start {
					t.Fatalf("byte %d ^ %#x: not truncated to %d", i, x, start)
				}
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
		t.Fatal("no flip exercised the torn-length case")
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
	const max = 8 + 2*(8+10)
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

func BenchmarkAppend32(b *testing.B) {
	l, _ := open(b, filepath.Join(b.TempDir(), "wal"), Options{})
	group := make([][]byte, 32)
	for i := range group {
		group[i] = bytes.Repeat([]byte{byte(i + 1)}, 300)
	}
	b.SetBytes(32 * 300)
	b.ReportAllocs()
	for b.Loop() {
		err := l.Append(group...)
		if errors.Is(err, ErrFull) { // what the engine does: checkpoint, Reset
			if err = l.Reset(); err == nil {
				err = l.Append(group...)
			}
		}
		if err != nil {
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
		l.Close()
		enc := encode(recs...)
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(after, enc) {
			t.Fatalf("file left holding %x, records encode to %x", after, enc)
		}
		if len(data) < len(enc) {
			if len(recs) != 0 {
				t.Fatalf("records from a file shorter than the header")
			}
			return
		}
		if !bytes.HasPrefix(data, enc) {
			t.Fatalf("records re-encode to %x, not a prefix of %x", enc, data)
		}
	})
}
