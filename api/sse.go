package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync/atomic"

	"github.com/sigbase/sigbase/store"
)

// The Server-Sent Events encoder. Frames are appended to a buffer that the
// stream writes and flushes at once. An event with an id always names it:
// an empty "id:" line would reset the browser's Last-Event-ID.

// appendOpening writes a stream's first frame: the reconnect delay the
// browser should use, and a keep-alive whose data names the keep-alive
// interval in milliseconds ({"interval":15000}), so a client can tell a
// quiet stream from a dead one without guessing the server's --keepalive.
// One frame, so it precedes the snapshot without an event between them for
// readers that take the first frame for retry:. Later keep-alives carry
// null, as Firebase's do.
func appendOpening(b []byte, retryMs, keepAliveMs int64) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, retryMs, 10)
	b = append(b, "\nevent: keep-alive\ndata: {\"interval\":"...)
	b = strconv.AppendInt(b, keepAliveMs, 10)
	return append(b, "}\n\n"...)
}

// appendChange writes a put or patch event: {"path":...,"data":...}.
func appendChange(b []byte, ev store.Event) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, ev.Rev, 10)
	if ev.Patch {
		b = append(b, "\nevent: patch\n"...)
	} else {
		b = append(b, "\nevent: put\n"...)
	}
	b = append(b, `data: {"path":`...)
	b = strconv.AppendQuote(b, ev.Path) // paths are [A-Za-z0-9_/-]: no escapes
	b = append(b, `,"data":`...)
	b = appendDataLines(b, ev.Data)
	return append(b, "}\n\n"...)
}

// appendControl writes an event without id: keep-alive (data null), cancel
// and auth_revoked (data: the reason as a JSON string).
func appendControl(b []byte, event string, reason string) []byte {
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	if reason == "" {
		b = append(b, "null"...)
	} else {
		q, _ := json.Marshal(reason)
		b = append(b, q...)
	}
	return append(b, "\n\n"...)
}

// appendDataLines continues a data field with JSON. Stored JSON is compact
// and so has no line breaks; should one appear, it starts a new data line,
// which the reader joins back with "\n".
func appendDataLines(b []byte, data []byte) []byte {
	if bytes.IndexByte(data, '\n') < 0 && bytes.IndexByte(data, '\r') < 0 {
		return append(b, data...) // always so for stored JSON; IndexByte is fast
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			return append(b, data...)
		}
		b = append(b, data[:i]...)
		b = append(b, "\ndata: "...)
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}

// The framings of shared event frames (store.Event.Frame keys): every
// watcher of a location writing the same framing writes the same bytes.
const (
	frameSSE     = iota // the SSE frame alone (HTTP/2)
	frameChunked        // the SSE frame as one HTTP/1.1 chunk (taken-over connections)
)

// encodeHook, when set (by tests), sees each event encodeSSE and
// encodeChunk encode: watchers of one location share each encoding.
var encodeHook atomic.Pointer[func(store.Event)]

func noteEncode(ev store.Event) {
	if f := encodeHook.Load(); f != nil {
		(*f)(ev)
	}
}

// encodeSSE is one event's frame, in a buffer of its own.
func encodeSSE(ev store.Event) []byte {
	noteEncode(ev)
	return appendChange(make([]byte, 0, len(ev.Data)+64+len(ev.Path)), ev)
}

// chunkHeadRoom fits a chunk-size line: up to 16 hex digits and CRLF.
const chunkHeadRoom = 18

// encodeChunk is one event's frame as an HTTP/1.1 chunk, in a buffer of its
// own: the frame is encoded after room for the size line, which then goes
// right before it, so nothing is copied.
func encodeChunk(ev store.Event) []byte {
	noteEncode(ev)
	b := make([]byte, chunkHeadRoom, chunkHeadRoom+len(ev.Data)+64+len(ev.Path)+2)
	b = appendChange(b, ev)
	n := len(b) - chunkHeadRoom
	b = append(b, "\r\n"...)
	var line [chunkHeadRoom]byte
	head := append(strconv.AppendInt(line[:0], int64(n), 16), "\r\n"...)
	start := chunkHeadRoom - len(head)
	copy(b[start:], head)
	return b[start:]
}

// appendChunk appends data as one HTTP/1.1 chunk.
func appendChunk(b, data []byte) []byte {
	b = strconv.AppendInt(b, int64(len(data)), 16)
	b = append(b, "\r\n"...)
	b = append(b, data...)
	return append(b, "\r\n"...)
}
