package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"

	"golang.org/x/sys/unix"
)

// Version 1 of the format, from before the file was reused: an 8-byte
// header ("SGWAL", two zero bytes, 1), then frames of a uint32 LE length, a
// uint32 LE CRC-32C of the length and the payload, and the payload. Open
// still reads it, so that a log left by an older sigbase is replayed; Reset
// rewrites the file as version 2. Its rules: an all-zero rest of the file or
// one shorter than a frame header is a torn tail, and so is a frame that
// runs past the end of the file unless a valid frame starts after its
// header; an impossible length or a complete frame with a checksum mismatch
// is corruption. A torn tail is truncated.

func (l *Log) loadV1(data []byte, logger *slog.Logger) ([][]byte, error) {
	recs, end, reason := scanV1(data)
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

func scanV1(data []byte) (recs [][]byte, end int64, reason string) {
	// The tail from off is all zeros iff off > lastNonZero.
	lastNonZero := len(data) - 1
	for lastNonZero >= 0 && data[lastNonZero] == 0 {
		lastNonZero--
	}
	off := v1HeaderSize
	for off < len(data) {
		if off > lastNonZero || len(data)-off < v1FrameHeaderSize {
			return recs, int64(off), ""
		}
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 || n > MaxPayload {
			return recs, int64(off), fmt.Sprintf("invalid record length %d", n)
		}
		next := off + v1FrameHeaderSize + n
		if next > len(data) {
			if p := findFrameV1(data, off+v1FrameHeaderSize); p >= 0 {
				return recs, int64(off), fmt.Sprintf(
					"record length %d runs past the end of the file, but a valid record starts at %d", n, p)
			}
			return recs, int64(off), ""
		}
		if !frameOKV1(data[off:next]) {
			return recs, int64(off), "checksum mismatch"
		}
		recs = append(recs, data[off+v1FrameHeaderSize:next:next])
		off = next
	}
	return recs, int64(off), ""
}

func findFrameV1(data []byte, from int) int {
	for p := from; p+v1FrameHeaderSize < len(data); p++ {
		n := int(binary.LittleEndian.Uint32(data[p:]))
		if n == 0 || n > MaxPayload || n > len(data)-p-v1FrameHeaderSize {
			continue
		}
		if frameOKV1(data[p : p+v1FrameHeaderSize+n]) {
			return p
		}
	}
	return -1
}

func frameOKV1(frame []byte) bool {
	want := binary.LittleEndian.Uint32(frame[4:])
	c := crc32.Update(0, castagnoli, frame[:4])
	return crc32.Update(c, castagnoli, frame[v1FrameHeaderSize:]) == want
}
