package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// maxLine bounds one SSE line (a snapshot of a big room is one line).
const maxLine = 16 << 20

// stream is one watch over its own TCP connection, read by a minimal
// Server-Sent Events parser: id, event and data fields, comments and retry
// ignored. It is used by one goroutine.
type stream struct {
	conn      net.Conn
	r         *bufio.Reader // over the (chunked) response body
	long      []byte        // a line longer than the buffer
	ev        event
	stopClose func() bool
}

// event is one dispatched SSE event; data is valid until the next call to next.
type event struct {
	id    uint64
	hasID bool
	name  string // "message" when the frame names none
	data  []byte
}

// openStream connects from the next source address, sends the watch
// request and reads the response head. It fails with a *statusError when
// the server refuses (429 and 503 at stream limits). bufSize is the read
// buffer size, small for idle watchers. The connection closes when ctx ends.
func (b *bench) openStream(ctx context.Context, path string, bufSize int) (*stream, error) {
	dctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	conn, err := b.dialer.dialSpread(dctx, "tcp", b.target.String())
	if err != nil {
		return nil, err
	}
	deadline, _ := dctx.Deadline()
	_ = conn.SetDeadline(deadline)
	req := "GET " + path + " HTTP/1.1\r\nHost: " + b.base.Host +
		"\r\nAccept: text/event-stream\r\nUser-Agent: sigbench\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, bufSize), nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, &statusError{code: resp.StatusCode, body: string(body)}
	}
	_ = conn.SetDeadline(time.Time{})
	return &stream{
		conn:      conn,
		r:         bufio.NewReaderSize(resp.Body, bufSize),
		stopClose: context.AfterFunc(ctx, func() { conn.Close() }),
	}, nil
}

// close ends the stream; a blocked next returns an error.
func (s *stream) close() {
	s.stopClose()
	s.conn.Close()
}

// next reads up to the next dispatched event (one with data). Frames
// without data, such as retry:, are skipped.
func (s *stream) next() (*event, error) {
	ev := &s.ev
	ev.id, ev.hasID, ev.name, ev.data = 0, false, "message", ev.data[:0]
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			if hasData {
				return ev, nil
			}
			ev.id, ev.hasID, ev.name = 0, false, "message"
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if hasData {
				ev.data = append(ev.data, '\n')
			}
			ev.data, hasData = append(ev.data, value...), true
		case "id":
			ev.id, err = strconv.ParseUint(string(value), 10, 64)
			ev.hasID = err == nil
		case "event":
			ev.name = eventName(value)
		}
	}
}

// snapshot reads up to the watch's first change, its snapshot, past the
// keep-alive that opens the stream.
func (s *stream) snapshot() (*event, error) {
	for {
		ev, err := s.next()
		if err != nil || ev.name != "keep-alive" {
			return ev, err
		}
	}
}

// eventName avoids an allocation for the names sigbase sends.
func eventName(b []byte) string {
	for _, n := range []string{"put", "patch", "keep-alive", "cancel", "auth_revoked"} {
		if string(b) == n {
			return n
		}
	}
	return string(b)
}

// readLine returns one line without its line ending; valid until the next call.
func (s *stream) readLine() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		s.long = append(s.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(s.long) > maxLine {
				return nil, fmt.Errorf("SSE line over %d bytes", maxLine)
			}
			line, err = s.r.ReadSlice('\n')
			s.long = append(s.long, line...)
		}
		line = s.long
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// change is the data of a put or patch event: {"path":...,"data":...}.
// splitChange finds both without decoding the value.
func splitChange(data []byte) (path string, value []byte, ok bool) {
	const head = `{"path":"`
	if !bytes.HasPrefix(data, []byte(head)) {
		return "", nil, false
	}
	rest := data[len(head):]
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return "", nil, false
	}
	path, rest = string(rest[:i]), rest[i+1:]
	const mid = `,"data":`
	if !bytes.HasPrefix(rest, []byte(mid)) || !bytes.HasSuffix(rest, []byte("}")) {
		return "", nil, false
	}
	return path, rest[len(mid) : len(rest)-1], true
}

// intField finds key (such as `"seq":`) followed by an integer in flat
// JSON, without decoding it.
func intField(data []byte, key string) (int64, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(key):]
	j := 0
	for j < len(rest) && (rest[j] == '-' || rest[j] >= '0' && rest[j] <= '9') {
		j++
	}
	v, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return v, err == nil
}
