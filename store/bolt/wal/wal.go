// Package wal is a single-file write-ahead log of opaque records, for a
// storage engine that acknowledges a group of writes once they are in the
// log and applies them to its main store later, in larger batches.
//
// # Format
//
// A 16-byte header, then frames:
//
//	"SGWAL", two zero bytes, version 2
//	uint32 LE epoch (≥ 1)
//	uint32 LE CRC-32C (Castagnoli) of the 12 bytes before it
//
// and each frame:
//
//	uint32 LE length n (1 ≤ n ≤ MaxPayload)
//	uint32 LE the header's epoch when the frame was written, XOR 0x9e3779b9
//	uint32 LE CRC-32C of the 8 bytes before it followed by the payload
//	n bytes of payload
//
// The XOR keeps a frame's epoch field from looking like the small integers
// that records are full of, so that the search for a valid frame after a
// damaged one (below) does not find one in old payload bytes by chance.
//
// The checksum covers the length and the epoch, so a damaged length in a
// complete frame fails that frame's checksum instead of misframing what
// follows.
//
// The file is reused: Reset does not truncate it but writes the header with
// the next epoch, and new frames overwrite the old ones in place. An
// overwrite of blocks the file already has needs no metadata in its
// fdatasync, which on ext4 spares a journal commit: on the development
// machine a 2.5 KiB write + fdatasync took 0.19 ms in place against 0.6 ms
// appended, with both cores busy. The log ends at the first frame whose
// epoch is not the header's. When the epoch would pass 2^32-1, Reset
// truncates the file and starts again at 1, so an epoch never repeats among
// the frames in the file.
//
// A file with a version 1 header (frames without an epoch, from before
// reuse) is read by version 1's rules; Reset turns it into version 2, and
// Append refuses it until then.
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
// returns survives a crash) and that a crash can only leave the last write
// partly done, not change bytes that were already synced. It does not
// defend against a disk that lies about flushes, and it detects but does not
// repair damage to synced data.
//
// # Torn tails and corruption
//
// Open reads the frames from the header on. At each frame boundary:
//
//   - Fewer than 12 bytes left, or a frame of another epoch (an older
//     frame, or zeros): the log ends here, if no complete frame of the
//     header's epoch with a valid checksum starts anywhere after it. If one
//     does, the epoch of a frame that is not the last was damaged: that is
//     corruption.
//   - A frame of the header's epoch with an impossible length, one that runs
//     past the end of the file, or a checksum mismatch: a torn last write,
//     under the same condition (no valid frame of the epoch after it);
//     otherwise corruption.
//
// A torn frame was never acknowledged (acknowledgement follows the
// fdatasync of the whole frame), so Open overwrites its header with zeros,
// syncs, logs a warning and carries on; the next Append goes there.
// Corruption, and a bad file header, make Open fail with a *CorruptError
// naming the file and the offset of the frame (0 for the header); nothing
// is changed. A file shorter than the header that holds a prefix of it (or
// zeros) is a creation that was cut off and is rewritten.
//
// Reset rewrites the 16-byte header in place: it relies on a write that
// small, within one sector, being all or nothing, as the disks this runs on
// make it. A header that fails its checksum is refused like other damage.
//
// One case cannot be told apart: damage to the last frame reads as a torn
// tail, so that one record is dropped (with the warning) even if it had been
// acknowledged. And a crash that tears a multi-record Append so that a
// later frame of it lands whole but an earlier one does not is refused, not
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
	"math"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

const (
	// MaxPayload is the largest record; a larger length field is damage.
	MaxPayload = 64 << 20
	// DefaultMaxBytes is the file size limit when Options.MaxBytes is 0.
	DefaultMaxBytes = 64 << 20

	headerSize      = 16
	frameHeaderSize = 12

	v1HeaderSize      = 8
	v1FrameHeaderSize = 8

	// frameSalt is XORed into the epoch a frame carries (package doc).
	frameSalt = 0x9e3779b9
)

var (
	// ErrFull is returned by Append, having written nothing, when the group
	// would take the log past Options.MaxBytes. Checkpoint, Reset, retry.
	ErrFull = errors.New("wal: log full")
	// ErrTooLarge is returned by Append, having written nothing, for a group
	// that would not fit even in an empty log; Reset would not help.
	ErrTooLarge = errors.New("wal: group larger than the log")
	// ErrEmptyRecord is returned by Append for a zero-length payload, which
	// the format cannot hold (length 0 is invalid).
	ErrEmptyRecord = errors.New("wal: empty record")
	// ErrNeedsReset is returned by Append on a version 1 log: replay it,
	// then Reset, which rewrites it as version 2.
	ErrNeedsReset = errors.New("wal: a version 1 log takes no appends before Reset")

	magic      = [8]byte{'S', 'G', 'W', 'A', 'L', 0, 0, 2}
	v1Header   = [v1HeaderSize]byte{'S', 'G', 'W', 'A', 'L', 0, 0, 1}
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
	// MaxBytes limits the log's size (Size), header included; 0 means
	// DefaultMaxBytes. The file stays at the largest size the log reached.
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
	size     int64 // where the log ends: the next frame goes here
	maxBytes int64
	epoch    uint32
	v1       bool   // a version 1 file, until Reset
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

// load reads and checks the whole file, sets aside a torn tail and leaves
// l.size at the end of the last good frame.
func (l *Log) load(logger *slog.Logger) ([][]byte, error) {
	data, err := io.ReadAll(l.f)
	if err != nil {
		return nil, fmt.Errorf("wal: read %s: %w", l.path, err)
	}
	if bytes.HasPrefix(data, v1Header[:]) {
		l.v1 = true
		return l.loadV1(data, logger)
	}
	if len(data) < headerSize {
		// Empty, or a creation cut off before its sync: nothing was ever
		// acknowledged in it.
		if !bytes.HasPrefix(header(1), data) && !allZero(data) {
			return nil, &CorruptError{l.path, 0, "short file that is not a log header"}
		}
		if len(data) > 0 {
			logger.Warn("wal: rewriting a partly written header", "path", l.path, "bytes", len(data))
		}
		if err := l.create(1); err != nil {
			return nil, err
		}
		// The file may be new: make its directory entry durable too.
		if err := syncDir(filepath.Dir(l.path)); err != nil {
			return nil, err
		}
		return nil, nil
	}
	epoch := binary.LittleEndian.Uint32(data[8:])
	if !bytes.Equal(data[:headerSize], header(epoch)) || epoch == 0 {
		return nil, &CorruptError{l.path, 0, "bad file header"}
	}
	l.epoch = epoch
	recs, end, torn, reason := scan(data, epoch)
	if reason != "" {
		return nil, &CorruptError{l.path, end, reason}
	}
	if torn {
		logger.Warn("wal: dropping a torn last record that was never acknowledged", "path", l.path, "offset", end)
		// Zeros end the log there, whatever the next Append leaves after
		// its own frames.
		if _, err := l.f.WriteAt(make([]byte, frameHeaderSize), end); err != nil {
			return nil, fmt.Errorf("wal: write %s: %w", l.path, err)
		}
		if err := unix.Fdatasync(l.fd); err != nil {
			return nil, fmt.Errorf("wal: sync %s: %w", l.path, err)
		}
	}
	l.size = end
	return recs, nil
}

// header is the file header of an epoch.
func header(epoch uint32) []byte {
	h := append(magic[:0:0], magic[:]...)
	h = binary.LittleEndian.AppendUint32(h, epoch)
	return binary.LittleEndian.AppendUint32(h, crc32.Checksum(h, castagnoli))
}

// scan parses the frames of data (header already checked). It returns the
// payloads and the offset where the log ends; torn says a torn frame starts
// there. A non-empty reason means corruption at that offset.
func scan(data []byte, epoch uint32) (recs [][]byte, end int64, torn bool, reason string) {
	off := headerSize
	for {
		if len(data)-off < frameHeaderSize || binary.LittleEndian.Uint32(data[off+4:]) != epoch^frameSalt {
			if p := findFrame(data, off+1, epoch); p >= 0 {
				return recs, int64(off), false, fmt.Sprintf("not a record of this epoch, but a valid record of it starts at %d", p)
			}
			return recs, int64(off), false, ""
		}
		n := int(binary.LittleEndian.Uint32(data[off:]))
		next := off + frameHeaderSize + n
		if n == 0 || n > MaxPayload || next > len(data) || !frameOK(data[off:next]) {
			if p := findFrame(data, off+1, epoch); p >= 0 {
				return recs, int64(off), false, fmt.Sprintf("damaged record (length %d), and a valid record starts at %d", n, p)
			}
			return recs, int64(off), true, ""
		}
		recs = append(recs, data[off+frameHeaderSize:next:next])
		off = next
	}
}

// findFrame returns the first offset at or after from where a complete frame
// of epoch with a valid checksum starts, or -1.
func findFrame(data []byte, from int, epoch uint32) int {
	for p := from; p+frameHeaderSize < len(data); p++ {
		if binary.LittleEndian.Uint32(data[p+4:]) != epoch^frameSalt {
			continue
		}
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
	want := binary.LittleEndian.Uint32(frame[8:])
	c := crc32.Update(0, castagnoli, frame[:8])
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

// create makes the file exactly the header of epoch, durably.
func (l *Log) create(epoch uint32) error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("wal: truncate %s: %w", l.path, err)
	}
	if _, err := l.f.WriteAt(header(epoch), 0); err != nil {
		return fmt.Errorf("wal: write %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("wal: sync %s: %w", l.path, err)
	}
	l.size, l.epoch, l.v1 = headerSize, epoch, false
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
// ErrFull, ErrTooLarge, ErrEmptyRecord and ErrNeedsReset write nothing and
// leave the Log usable; any other error poisons it, since a failed fsync
// cannot be retried safely (the kernel may have dropped the dirty pages).
func (l *Log) Append(payloads ...[]byte) error {
	if l.err != nil {
		return l.err
	}
	if len(payloads) == 0 {
		return nil
	}
	if l.v1 {
		return ErrNeedsReset
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
		buf = binary.LittleEndian.AppendUint32(buf, l.epoch^frameSalt)
		c := crc32.Update(0, castagnoli, buf[h:h+8])
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
// everything the log did. It writes the header with the next epoch, which
// makes every frame in the file an old one. A crash before Reset returns
// leaves the records to be replayed again, so replay must skip what the
// store already has.
func (l *Log) Reset() error {
	if l.err != nil {
		return l.err
	}
	if l.v1 || l.epoch == math.MaxUint32 {
		if err := l.create(1); err != nil {
			l.err = err
		}
		return l.err
	}
	next := l.epoch + 1
	if next == frameSalt {
		next++ // its frames would carry a zero epoch field, like zeroed bytes
	}
	if _, err := l.f.WriteAt(header(next), 0); err != nil {
		l.err = fmt.Errorf("wal: write %s: %w", l.path, err)
		return l.err
	}
	if err := unix.Fdatasync(l.fd); err != nil {
		l.err = fmt.Errorf("wal: sync %s: %w", l.path, err)
		return l.err
	}
	l.epoch, l.size = next, headerSize
	return nil
}

// Size returns the log's size in bytes, header included: where the next
// frame goes. The file may be larger, holding old frames.
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
