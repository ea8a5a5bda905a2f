// Package wal is a single-file write-ahead log of opaque records, for a
// storage engine that acknowledges a group of writes once they are in the
// log and applies them to its main store later, in larger batches.
//
// # Format
//
// An 8-byte header ("SGWAL", two zero bytes, version 1), then frames:
//
//	uint32 LE length n (1 ≤ n ≤ MaxPayload)
//	uint32 LE CRC-32C (Castagnoli) of the 4 length bytes followed by the payload
//	n bytes of payload
//
// The checksum covers the length, so a damaged length in a complete frame
// fails that frame's checksum instead of misframing what follows.
//
// # Guarantees
//
// When Append returns nil, every record of the group has been written with
// one write(2) and made durable with one fdatasync(2). Open returns exactly
// the records of every Append that returned nil since the last Reset, in
// order, plus possibly a prefix of the records of the one Append that was
// interrupted: atomicity is per record, not per group, so a write that must
// be all-or-nothing belongs in one record.
//
// It assumes the OS and disk honour fdatasync (data written before it
// returns survives a crash) and that a crash can only cut off or zero the
// end of the last write, not change bytes that were already synced. It does
// not defend against a disk that lies about flushes, and it detects but does
// not repair damage to synced data.
//
// # Torn tails and corruption
//
// Open reads the frames from the header on. At each frame boundary:
//
//   - If the rest of the file is empty, reading is done.
//   - If the rest of the file is all zero bytes, or shorter than a frame
//     header (8 bytes), it is a torn tail.
//   - If the length is 0 or over MaxPayload: corruption.
//   - If the frame is complete (it ends at or before the end of the file):
//     a checksum mismatch is corruption; otherwise it is a record.
//   - If the frame runs past the end of the file, it is a torn tail only if
//     no complete frame with a valid checksum starts anywhere after its
//     header; if one does, the length was damaged in a frame that is not the
//     last, and that is corruption.
//
// A torn tail was never acknowledged (acknowledgement follows the fdatasync
// of the whole frame), so Open truncates the file at the tail's offset,
// syncs, logs a warning and carries on. Corruption, and a bad file header,
// make Open fail with a *CorruptError naming the file and the offset of the
// frame (0 for the header); nothing is truncated. A file shorter than the
// header that holds a prefix of it (or zeros) is a creation that was cut
// off and is rewritten.
//
// One case cannot be told apart: a damaged length in the last frame that
// points past the end of the file reads as a torn tail, so that one record
// is dropped (with the warning) even if it had been acknowledged. And a
// crash that leaves zeros inside the last write with written bytes after
// them (some filesystems can) fails a checksum and is refused, not
// repaired: the log cannot tell it from damage to a synced record.
//
// # Concurrency
//
// A Log has one writer: Append, Reset, Size and Close must be called from
// one goroutine at a time (the engine's commit goroutine). It takes no locks.
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

	"golang.org/x/sys/unix"
)

const (
	// MaxPayload is the largest record; a larger length field is damage.
	MaxPayload = 64 << 20
	// DefaultMaxBytes is the file size limit when Options.MaxBytes is 0.
	DefaultMaxBytes = 64 << 20

	headerSize      = 8
	frameHeaderSize = 8
)

var (
	// ErrFull is returned by Append, having written nothing, when the group
	// would take the file past Options.MaxBytes. Checkpoint, Reset, retry.
	ErrFull = errors.New("wal: log full")
	// ErrTooLarge is returned by Append, having written nothing, for a group
	// that would not fit even in an empty log; Reset would not help.
	ErrTooLarge = errors.New("wal: group larger than the log")
	// ErrEmptyRecord is returned by Append for a zero-length payload, which
	// the format cannot hold (length 0 is invalid).
	ErrEmptyRecord = errors.New("wal: empty record")

	fileHeader = [headerSize]byte{'S', 'G', 'W', 'A', 'L', 0, 0, 1}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// CorruptError reports damage Open will not repair: a bad file header
// (Offset 0), a checksum mismatch or an impossible length in a frame that
// starts at Offset.
type CorruptError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: %s: corrupt at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// Options configure Open.
type Options struct {
	// MaxBytes limits the file size, header included; 0 means
	// DefaultMaxBytes.
	MaxBytes int64
	// Logger receives the torn-tail warning; nil means slog.Default().
	Logger *slog.Logger
}

// Log is an open write-ahead log. See the package doc for the one-writer
// rule.
type Log struct {
	f        *os.File
	fd       int
	path     string
	size     int64
	maxBytes int64
	buf      []byte // frames of the group being appended, reused
	err      error  // sticky: after a failed write or sync nothing is safe
}

// Open opens the log at path, creating it if needed, and returns the records
// it holds in order. The returned slices are the caller's.
func Open(path string, opts Options) (*Log, [][]byte, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	maxBytes := opts.MaxBytes
	if maxBytes == 0 {
		maxBytes = DefaultMaxBytes
	}
	if maxBytes < headerSize+frameHeaderSize+1 {
		return nil, nil, fmt.Errorf("wal: MaxBytes %d is too small", maxBytes)
	}

	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{f: f, fd: int(f.Fd()), path: path, maxBytes: maxBytes}
	recs, err := l.load(logger)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return l, recs, nil
}

// load reads and checks the whole file, repairs a torn tail and leaves
// l.size at the end of the last good frame.
func (l *Log) load(logger *slog.Logger) ([][]byte, error) {
	data, err := io.ReadAll(l.f)
	if err != nil {
		return nil, fmt.Errorf("wal: read %s: %w", l.path, err)
	}
	if len(data) < headerSize {
		// Empty, or a creation cut off before its sync: nothing was ever
		// acknowledged in it.
		if !bytes.HasPrefix(fileHeader[:], data) && !allZero(data) {
			return nil, &CorruptError{l.path, 0, "short file that is not a log header"}
		}
		if len(data) > 0 {
			logger.Warn("wal: rewriting a partly written header", "path", l.path, "bytes", len(data))
		}
		if err := l.writeHeader(); err != nil {
			return nil, err
		}
		// The file may be new: make its directory entry durable too.
		if err := syncDir(filepath.Dir(l.path)); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if !bytes.Equal(data[:headerSize], fileHeader[:]) {
		return nil, &CorruptError{l.path, 0, "bad file header"}
	}

	recs, end, reason := scan(data)
	if reason != "" {
		return nil, &CorruptError{l.path, end, reason}
	}
	if end < int64(len(data)) {
		dropped := int64(len(data)) - end
		logger.Warn("wal: dropping a torn tail that was never acknowledged",
			"path", l.path, "offset", end, "bytes", dropped)
		if err := l.f.Truncate(end); err != nil {
			return nil, fmt.Errorf("wal: truncate %s: %w", l.path, err)
		}
		if err := unix.Fdatasync(l.fd); err != nil {
			return nil, fmt.Errorf("wal: sync %s: %w", l.path, err)
		}
	}
	l.size = end
	return recs, nil
}

// scan parses the frames of data (header already checked). It returns the
// payloads and the offset where the good frames end. A non-empty reason
// means corruption at that offset; otherwise anything past it is a torn
// tail.
func scan(data []byte) (recs [][]byte, end int64, reason string) {
	// The tail from off is all zeros iff off > lastNonZero.
	lastNonZero := len(data) - 1
	for lastNonZero >= 0 && data[lastNonZero] == 0 {
		lastNonZero--
	}
	off := headerSize
	for off < len(data) {
		if off > lastNonZero || len(data)-off < frameHeaderSize {
			return recs, int64(off), ""
		}
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 || n > MaxPayload {
			return recs, int64(off), fmt.Sprintf("invalid record length %d", n)
		}
		next := off + frameHeaderSize + n
		if next > len(data) {
			if p := findFrame(data, off+frameHeaderSize); p >= 0 {
				return recs, int64(off), fmt.Sprintf(
					"record length %d runs past the end of the file, but a valid record starts at %d", n, p)
			}
			return recs, int64(off), ""
		}
		if !frameOK(data[off:next]) {
			return recs, int64(off), "checksum mismatch"
		}
		recs = append(recs, data[off+frameHeaderSize:next:next])
		off = next
	}
	return recs, int64(off), ""
}

// findFrame returns the first offset at or after from where a complete frame
// with a valid checksum starts, or -1.
func findFrame(data []byte, from int) int {
	for p := from; p+frameHeaderSize < len(data); p++ {
		n := int(binary.LittleEndian.Uint32(data[p:]))
		if n == 0 || n > MaxPayload || n > len(data)-p-frameHeaderSize {
			continue
		}
		if frameOK(data[p : p+frameHeaderSize+n]) {
			return p
		}
	}
	return -1
}

// frameOK checks a complete frame's checksum.
func frameOK(frame []byte) bool {
	want := binary.LittleEndian.Uint32(frame[4:])
	c := crc32.Update(0, castagnoli, frame[:4])
	return crc32.Update(c, castagnoli, frame[frameHeaderSize:]) == want
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// writeHeader makes the file exactly the header, durably.
func (l *Log) writeHeader() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("wal: truncate %s: %w", l.path, err)
	}
	if _, err := l.f.WriteAt(fileHeader[:], 0); err != nil {
		return fmt.Errorf("wal: write %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("wal: sync %s: %w", l.path, err)
	}
	l.size = headerSize
	return nil
}

// syncDir makes a new file's directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: sync dir %s: %w", dir, err)
	}
	return nil
}

// Append writes the group's records with one write and makes them durable
// with one fdatasync before it returns. With no payloads it does nothing.
// ErrFull, ErrTooLarge and ErrEmptyRecord write nothing and leave the Log
// usable; any other error poisons it, since a failed fsync cannot be
// retried safely (the kernel may have dropped the dirty pages).
func (l *Log) Append(payloads ...[]byte) error {
	if l.err != nil {
		return l.err
	}
	if len(payloads) == 0 {
		return nil
	}
	var total int64
	for _, p := range payloads {
		if len(p) == 0 {
			return ErrEmptyRecord
		}
		if len(p) > MaxPayload {
			return ErrTooLarge
		}
		total += frameHeaderSize + int64(len(p))
	}
	if headerSize+total > l.maxBytes {
		return ErrTooLarge
	}
	if l.size+total > l.maxBytes {
		return ErrFull
	}

	buf := l.buf[:0]
	for _, p := range payloads {
		// The header goes straight into buf: a local array would escape
		// through crc32 and cost an allocation per record.
		h := len(buf)
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(p)))
		c := crc32.Update(0, castagnoli, buf[h:h+4])
		buf = binary.LittleEndian.AppendUint32(buf, crc32.Update(c, castagnoli, p))
		buf = append(buf, p...)
	}
	l.buf = buf

	if _, err := l.f.WriteAt(buf, l.size); err != nil {
		l.err = fmt.Errorf("wal: write %s: %w", l.path, err)
		return l.err
	}
	if err := unix.Fdatasync(l.fd); err != nil {
		l.err = fmt.Errorf("wal: sync %s: %w", l.path, err)
		return l.err
	}
	l.size += total
	return nil
}

// Reset drops every record, durably: call it once the main store holds
// everything the log did. A crash before Reset returns leaves the records
// to be replayed again, so replay must skip what the store already has.
func (l *Log) Reset() error {
	if l.err != nil {
		return l.err
	}
	if err := l.f.Truncate(headerSize); err != nil {
		l.err = fmt.Errorf("wal: truncate %s: %w", l.path, err)
		return l.err
	}
	if err := unix.Fdatasync(l.fd); err != nil {
		l.err = fmt.Errorf("wal: sync %s: %w", l.path, err)
		return l.err
	}
	l.size = headerSize
	return nil
}

// Size returns the file's size in bytes, header included.
func (l *Log) Size() int64 { return l.size }

// Close closes the file. Everything appended is already durable.
func (l *Log) Close() error {
	if l.f == nil {
		return os.ErrClosed
	}
	err := l.f.Close()
	l.f = nil
	if l.err == nil {
		l.err = fmt.Errorf("wal: %s: %w", l.path, os.ErrClosed)
	}
	return err
}
