package api

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sigbase/sigbase/store"
)

// watch streams the changes of a location as Server-Sent Events until the
// client leaves, the server shuts down, the token expires, or the watcher
// falls too far behind.
//
// Over HTTP/1.1 the stream takes the connection over (Hijack) and goes on
// in a goroutine of its own: net/http's per-connection buffers and reader
// goroutine, and this handler's stack under the middleware chain, are
// released, so an idle watcher costs a few KiB; one poller notices hang-ups
// (hangups). Over HTTP/2 the handler streams through the ResponseWriter.
// disconnect is what a watch registers with onDisconnect; session "" is none.
type disconnect struct {
	session string
	actions []disconnectAction
	patch   []byte // the actions as one room PATCH
}

// watches is what a watch uses: the stream limits and onDisconnect
// sessions, the stream settings, metrics and log, and the server's shutdown.
type watches struct {
	gate                           *streamGate
	presence                       *presence
	keepAlive, retry, writeTimeout time.Duration
	metrics                        *Metrics
	log                            *slog.Logger
	shutdown                       <-chan struct{}
	running                        *sync.WaitGroup // streams on taken-over connections
}

func watch(c echo.Context, st *store.Store, ws *watches, at store.Path, g grant, q store.Query, d disconnect) error {
	after, resume, malformed := lastEventID(c.Request())
	var filter *queryFilter
	if !q.IsZero() {
		// A filtered watch always starts from a snapshot of its answer: a
		// replay of the key's changes would need the answer at Last-Event-ID.
		after, resume, malformed = 0, false, false
		filter = newQueryFilter(q)
	}
	release, err := ws.gate.acquire(at.Room, clientKey(c.RealIP()))
	if err != nil {
		return err
	}
	w, err := st.Watch(at, after, resume)
	if err != nil {
		release()
		return err
	}
	leave := func() {}
	if d.session != "" {
		if leave, err = ws.presence.open(at.Room, d.session, d.patch); err != nil {
			w.Close()
			release()
			return err
		}
	}
	ws.metrics.streams.Inc()
	s := &stream{w: w, at: at, ws: ws, filter: filter, resumeAsked: resume || malformed, release: release, leave: leave}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if c.Request().ProtoMajor == 1 {
		if conn, err := hijack(c); err == nil {
			s.out = &connWriter{conn: conn, timeout: ws.writeTimeout}
			s.gone, s.unwatch = ws.gate.hangups.watch(conn)
			ws.running.Add(1)
			go func() {
				defer ws.running.Done()
				s.serve(context.Background(), g.expires)
			}()
			return nil
		}
	}
	res := c.Response()
	res.WriteHeader(http.StatusOK)
	s.out = &flushWriter{w: res, rc: http.NewResponseController(res), timeout: ws.writeTimeout}
	s.serve(c.Request().Context(), g.expires)
	return nil
}

// hijack takes the connection over and writes the response head: the
// headers set so far (CORS, request id, stream headers). The body is
// chunked, so a stream that ends without its last chunk (a crash, a cut
// connection) is an error to the client, which then reconnects, and only
// a stream the server ends on purpose ends cleanly (connWriter.finish).
func hijack(c echo.Context) (net.Conn, error) {
	conn, _, err := http.NewResponseController(c.Response()).Hijack()
	if err != nil {
		return nil, err
	}
	// The server's deadlines (ReadTimeout, WriteTimeout) may still be set.
	_ = conn.SetDeadline(time.Time{})
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h := c.Response().Header()
	h.Set("Connection", "close")
	h.Set("Transfer-Encoding", "chunked")
	_ = h.Write(&head)
	head.WriteString("\r\n")
	if _, err := conn.Write(head.Bytes()); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// stream is one open watch.
type stream struct {
	w           *store.Watcher
	at          store.Path
	ws          *watches
	filter      *queryFilter // a filtered watch's query; nil for a plain one
	out         frameWriter
	resumeAsked bool            // Last-Event-ID was given: count how the resume went
	release     func()          // gives the stream's slot back
	leave       func()          // ends its part in its onDisconnect session
	gone        <-chan struct{} // closed when the client hung up (taken-over connections)
	unwatch     func()          // stops watching for that, before the connection closes
	buf         []byte
}

// serve sends retry: with the keep-alive interval, then events, and cleans up when the stream ends.
func (s *stream) serve(ctx context.Context, tokenExpires time.Time) {
	defer func() {
		if s.unwatch != nil {
			s.unwatch()
		}
		s.out.close()
		s.w.Close()
		s.release()
		s.leave()
		s.ws.metrics.streams.Dec()
	}()
	if s.out.send(appendOpening(nil, s.ws.retry.Milliseconds(), s.ws.keepAlive.Milliseconds())) == nil {
		s.run(ctx, tokenExpires)
	}
}

// run writes events until something ends the stream. Every frame restarts
// the keep-alive timer.
func (s *stream) run(ctx context.Context, tokenExpires time.Time) {
	keepAlive := time.NewTimer(s.ws.keepAlive)
	defer keepAlive.Stop()
	var expired <-chan time.Time // the token's end, when auth is on
	if !tokenExpires.IsZero() {
		t := time.NewTimer(time.Until(tokenExpires))
		defer t.Stop()
		expired = t.C
	}
	for {
		select {
		case <-s.w.Ready():
			if !s.deliver() {
				return
			}
		case <-keepAlive.C:
			if s.out.send(appendControl(nil, "keep-alive", "")) != nil {
				return
			}
		case <-expired:
			s.end(appendControl(nil, "auth_revoked", "token expired"))
			return
		case <-s.ws.shutdown:
			s.end(appendControl(nil, "cancel", "server shutting down"))
			return
		case <-ctx.Done():
			return
		case <-s.gone:
			return
		}
		keepAlive.Reset(s.ws.keepAlive)
	}
}

// end sends the stream's last frame (cancel, auth_revoked) and ends the
// body cleanly.
func (s *stream) end(frame []byte) {
	if s.out.send(frame) == nil {
		s.out.finish()
	}
}

// deliver writes what the watcher has; false ends the stream, after a
// cancel when the server drops the watcher.
func (s *stream) deliver() bool {
	events, err := s.w.Next()
	if s.resumeAsked && err == nil {
		s.ws.metrics.observeResume(s.w.Replayed())
		s.resumeAsked = false
	}
	switch {
	case errors.Is(err, store.ErrEvicted):
		s.ws.metrics.evictions.Inc()
		s.end(appendControl(nil, "cancel", "too slow to keep up: reconnect with Last-Event-ID to resume"))
		return false
	case errors.Is(err, store.ErrClosed):
		s.end(appendControl(nil, "cancel", "server shutting down"))
		return false
	case err != nil:
		s.ws.log.Error("watch failed", "location", s.at.String(), "err", err)
		s.end(appendControl(nil, "cancel", "server error"))
		return false
	case len(events) == 0:
		return true
	}
	if s.filter != nil {
		if events = s.filter.apply(events); len(events) == 0 {
			return true
		}
	}
	if s.write(events) != nil {
		return false
	}
	s.ws.metrics.events.Add(float64(len(events)))
	return true
}

// write sends events in one write. Live events of an unfiltered watch go
// as the frames every watcher of the location shares (store.Event.Frame):
// the first watcher to write a change encodes it in its framing, the others
// write the same bytes, with no copy when there is one event. The rest (a
// snapshot, a replay, a filtered watch) are encoded into the stream's buffer.
func (s *stream) write(events []store.Event) error {
	if s.filter == nil {
		key, encode := s.out.framing()
		if len(events) == 1 {
			if frame, ok := events[0].Frame(key, encode); ok {
				return s.out.sendFramed(frame)
			}
		} else if s.sharedFrames(events, key, encode) {
			return s.dropLargeBuf(s.out.sendFramed(s.buf))
		}
	}
	s.buf = s.buf[:0]
	for _, ev := range events {
		s.buf = appendChange(s.buf, ev)
	}
	return s.dropLargeBuf(s.out.send(s.buf))
}

// dropLargeBuf lets a large snapshot's or backlog's buffer go, so it is not
// kept for the stream's life, and passes err on.
func (s *stream) dropLargeBuf(err error) error {
	if cap(s.buf) > 64<<10 {
		s.buf = nil
	}
	return err
}

// sharedFrames gathers the shared frames of events into the stream's
// buffer; false when one has none.
func (s *stream) sharedFrames(events []store.Event, key int, encode func(store.Event) []byte) bool {
	s.buf = s.buf[:0]
	for _, ev := range events {
		frame, ok := ev.Frame(key, encode)
		if !ok {
			return false
		}
		s.buf = append(s.buf, frame...)
	}
	return true
}

// frameWriter writes frames with a deadline per write, which also bounds
// how long a peer that stopped reading can hold its stream.
type frameWriter interface {
	send(b []byte) error
	// framing names the framing sendFramed takes, as a key of
	// store.Event.Frame, and the encoder of one event in it.
	framing() (key int, encode func(store.Event) []byte)
	// sendFramed writes frames already in the writer's framing; b may be
	// shared with other streams and is not modified.
	sendFramed(b []byte) error
	// finish ends the body cleanly: the server means the stream to end.
	finish()
	close()
}

// connWriter writes to a hijacked HTTP/1.1 connection, one chunk a send.
type connWriter struct {
	conn    net.Conn
	timeout time.Duration
	chunk   []byte
}

func (w *connWriter) send(b []byte) error {
	// One write(2) per frame: the chunk header and trailer go around a copy.
	w.chunk = appendChunk(w.chunk[:0], b)
	err := w.sendFramed(w.chunk)
	if cap(w.chunk) > 64<<10 {
		w.chunk = nil // a large snapshot's buffer is not kept for the stream's life
	}
	return err
}

// framing: chunks, each holding one event's frame.
func (w *connWriter) framing() (int, func(store.Event) []byte) { return frameChunked, encodeChunk }

// sendFramed writes chunks as they are, in one write(2).
func (w *connWriter) sendFramed(b []byte) error {
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return err
	}
	_, err := w.conn.Write(b)
	return err
}

func (w *connWriter) finish() {
	if w.conn.SetWriteDeadline(time.Now().Add(w.timeout)) == nil {
		_, _ = w.conn.Write([]byte("0\r\n\r\n"))
	}
}

func (w *connWriter) close() { w.conn.Close() }

// flushWriter writes through the ResponseWriter (HTTP/2) and flushes.
type flushWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *flushWriter) send(b []byte) error {
	if err := w.rc.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return err
	}
	if _, err := w.w.Write(b); err != nil {
		return err
	}
	return w.rc.Flush()
}

// framing: plain SSE frames; HTTP/2 frames them itself.
func (w *flushWriter) framing() (int, func(store.Event) []byte) { return frameSSE, encodeSSE }

func (w *flushWriter) sendFramed(b []byte) error { return w.send(b) }

// finish and close leave the response to the handler's return, which
// ends an HTTP/2 stream cleanly; a crash resets it.
func (w *flushWriter) finish() {}
func (w *flushWriter) close()  {}

// lastEventID reads the resume point from Last-Event-ID or last_event_id.
// A malformed one asks for a resume that cannot be honoured: a snapshot.
func lastEventID(r *http.Request) (after uint64, resume, malformed bool) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("last_event_id")
	}
	if v = strings.TrimSpace(v); v == "" {
		return 0, false, false
	}
	after, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, true
	}
	return after, true, false
}
