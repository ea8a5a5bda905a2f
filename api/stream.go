package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sigbase/sigbase/store"
)

// watch streams the changes of a location as Server-Sent Events until the
// client leaves, the server shuts down, the token expires, or the watcher
// falls too far behind. The handler owns the response until it returns
// (echo pools contexts).
func watch(c echo.Context, st *store.Store, cfg Config, gate *streamGate, at store.Path, g grant) error {
	after, resume, malformed := lastEventID(c.Request())
	release, err := gate.acquire(at.Room, clientKey(c.RealIP()))
	if err != nil {
		return err
	}
	defer release()
	w, err := st.Watch(at, after, resume)
	if err != nil {
		return err
	}
	defer w.Close()
	cfg.Metrics.streams.Inc()
	defer cfg.Metrics.streams.Dec()

	res := c.Response()
	h := res.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no")
	res.WriteHeader(http.StatusOK)
	s := &stream{w: w, at: at, cfg: cfg, resumeAsked: resume || malformed,
		out: &eventWriter{w: res, rc: http.NewResponseController(res), timeout: cfg.WriteTimeout}}
	if s.out.send(appendRetry(nil, cfg.Retry.Milliseconds())) == nil {
		s.run(c.Request().Context(), g.expires)
	}
	return nil
}

// stream is one open watch.
type stream struct {
	w           *store.Watcher
	at          store.Path
	cfg         Config
	out         *eventWriter
	resumeAsked bool // Last-Event-ID was given: count how the resume went
	buf         []byte
}

// run writes events until something ends the stream. Every frame restarts
// the keep-alive timer.
func (s *stream) run(ctx context.Context, tokenExpires time.Time) {
	keepAlive := time.NewTimer(s.cfg.KeepAlive)
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
			_ = s.out.send(appendControl(nil, "auth_revoked", "token expired"))
			return
		case <-s.cfg.Shutdown:
			_ = s.out.send(appendControl(nil, "cancel", "server shutting down"))
			return
		case <-ctx.Done():
			return
		}
		keepAlive.Reset(s.cfg.KeepAlive)
	}
}

// deliver writes what the watcher has; false ends the stream, after a
// cancel when the server drops the watcher.
func (s *stream) deliver() bool {
	events, err := s.w.Next()
	if s.resumeAsked && err == nil {
		s.cfg.Metrics.observeResume(s.w.Replayed())
		s.resumeAsked = false
	}
	switch {
	case errors.Is(err, store.ErrEvicted):
		s.cfg.Metrics.evictions.Inc()
		_ = s.out.send(appendControl(nil, "cancel", "too slow to keep up: reconnect with Last-Event-ID to resume"))
		return false
	case errors.Is(err, store.ErrClosed):
		_ = s.out.send(appendControl(nil, "cancel", "server shutting down"))
		return false
	case err != nil:
		s.cfg.Logger.Error("watch failed", "location", s.at.String(), "err", err)
		_ = s.out.send(appendControl(nil, "cancel", "server error"))
		return false
	case len(events) == 0:
		return true
	}
	s.buf = s.buf[:0]
	for _, ev := range events {
		s.buf = appendChange(s.buf, ev)
	}
	if s.out.send(s.buf) != nil {
		return false
	}
	s.cfg.Metrics.events.Add(float64(len(events)))
	return true
}

// eventWriter writes frames with a deadline per write, which also bounds how
// long a peer that stopped reading can hold its stream.
type eventWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (s *eventWriter) send(b []byte) error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

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
