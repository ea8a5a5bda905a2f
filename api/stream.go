package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sigbase/sigbase/store"
)

// watch streams the changes of a location as Server-Sent Events until the
// client leaves, the server shuts down, or the watcher falls too far behind.
// The handler owns the response until it returns (echo pools contexts).
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
	m := cfg.Metrics
	m.streams.Inc()
	defer m.streams.Dec()

	res := c.Response()
	h := res.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no")
	res.WriteHeader(http.StatusOK)
	s := &eventWriter{w: res, rc: http.NewResponseController(res), timeout: cfg.WriteTimeout}
	if s.send(appendRetry(nil, cfg.Retry.Milliseconds())) != nil {
		return nil
	}

	keepAlive := time.NewTimer(cfg.KeepAlive)
	defer keepAlive.Stop()
	var expired <-chan time.Time // the token's end, when auth is on
	if !g.expires.IsZero() {
		t := time.NewTimer(time.Until(g.expires))
		defer t.Stop()
		expired = t.C
	}
	first := true
	var buf []byte
	for {
		select {
		case <-w.Ready():
			events, err := w.Next()
			if first && (resume || malformed) && err == nil {
				m.observeResume(w.Replayed())
			}
			first = false
			switch {
			case errors.Is(err, store.ErrEvicted):
				m.evictions.Inc()
				_ = s.send(appendControl(nil, "cancel", "too slow to keep up: reconnect with Last-Event-ID to resume"))
				return nil
			case errors.Is(err, store.ErrClosed):
				_ = s.send(appendControl(nil, "cancel", "server shutting down"))
				return nil
			case err != nil:
				cfg.Logger.Error("watch failed", "location", at.String(), "err", err)
				_ = s.send(appendControl(nil, "cancel", "server error"))
				return nil
			case len(events) == 0:
				continue
			}
			buf = buf[:0]
			for _, ev := range events {
				buf = appendChange(buf, ev)
			}
			if s.send(buf) != nil {
				return nil
			}
			m.events.Add(float64(len(events)))
		case <-keepAlive.C:
			if s.send(appendControl(nil, "keep-alive", "")) != nil {
				return nil
			}
		case <-expired:
			_ = s.send(appendControl(nil, "auth_revoked", "token expired"))
			return nil
		case <-cfg.Shutdown:
			_ = s.send(appendControl(nil, "cancel", "server shutting down"))
			return nil
		case <-c.Request().Context().Done():
			return nil
		}
		keepAlive.Reset(cfg.KeepAlive)
	}
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
