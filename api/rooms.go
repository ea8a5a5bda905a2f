package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sigbase/sigbase/store"
)

// handleRead answers GET of a location, or starts a watch.
func handleRead(st *store.Store, auth *Auth, ws *watches) echo.HandlerFunc {
	return func(c echo.Context) error {
		at, err := location(c)
		if err != nil {
			return err
		}
		stream := wantsStream(c.Request())
		kind := kindRead
		if stream {
			kind = kindWatch
		}
		p, err := parseParams(c.Request(), at, kind)
		if err != nil {
			return err
		}
		unchanged, err := ifNoneMatch(c.Request().Header, stream)
		if err != nil {
			return err
		}
		g, err := authorize(c, auth, at.Room, PermRead)
		if err != nil {
			return err
		}
		if stream {
			var d disconnect
			if d.session, d.actions, d.patch, err = parseDisconnect(st, at.Room, c.Request().URL.Query()); err != nil {
				return err
			}
			if len(d.actions) > 0 && auth != nil {
				if _, err := authorize(c, auth, at.Room, PermWrite); err != nil {
					return &apiError{status: http.StatusForbidden, msg: "ondisconnect needs a write token"}
				}
			}
			return watch(c, st, ws, at, g, p.query, d)
		}
		v, err := st.Get(at)
		if err != nil {
			return err
		}
		c.Response().Header().Set("ETag", etag(v.Rev))
		if unchanged.Set && unchanged.Rev == v.Rev {
			return c.NoContent(http.StatusNotModified)
		}
		data := v.Data
		switch {
		case p.shallow:
			data = store.Shallow(data)
		case !p.query.IsZero():
			data = p.query.Apply(data)
		}
		return writeJSON(c, http.StatusOK, data)
	}
}

func handlePut(wr writes) echo.HandlerFunc {
	st := wr.st
	return writeHandler(wr, "put", func(c echo.Context, at store.Path, body []byte, cond store.Cond) (store.Result, error) {
		return st.Put(c.Request().Context(), at, body, cond)
	})
}

func handleDelete(wr writes) echo.HandlerFunc {
	st := wr.st
	return writeHandler(wr, "delete", func(c echo.Context, at store.Path, _ []byte, cond store.Cond) (store.Result, error) {
		return st.Delete(c.Request().Context(), at, cond)
	})
}

func handlePush(wr writes) echo.HandlerFunc {
	st := wr.st
	return writeHandler(wr, "push", func(c echo.Context, at store.Path, body []byte, cond store.Cond) (store.Result, error) {
		res, err := st.Push(c.Request().Context(), at, body, cond)
		res.Value, _ = json.Marshal(map[string]string{"name": res.Name})
		return res, err
	})
}

func handlePatch(wr writes) echo.HandlerFunc {
	st := wr.st
	return writeHandler(wr, "patch", func(c echo.Context, at store.Path, body []byte, cond store.Cond) (store.Result, error) {
		return st.Patch(c.Request().Context(), at, body, cond)
	})
}

type writeFunc func(c echo.Context, at store.Path, body []byte, cond store.Cond) (store.Result, error)

// writeHandler does what every write shares: location, If-Match, the body
// under its limit, metrics, and the response (ETag; print=silent).
// writes is what the write handlers use.
type writes struct {
	st      *store.Store
	auth    *Auth
	metrics *Metrics
}

func writeHandler(wr writes, op string, write writeFunc) echo.HandlerFunc {
	series := wr.metrics.writeSeriesOf(op)
	return func(c echo.Context) error {
		at, err := location(c)
		if err != nil {
			return err
		}
		if _, err := parseParams(c.Request(), at, kindWrite); err != nil {
			return err
		}
		if _, sent := c.Request().Header["If-None-Match"]; sent {
			return badRequest("If-None-Match applies to reads only; a conditional write takes If-Match")
		}
		if _, err := authorize(c, wr.auth, at.Room, PermWrite); err != nil {
			return err
		}
		cond, err := ifMatchHeader(c.Request().Header)
		if err != nil {
			return err
		}
		body, err := readBody(c, wr.st)
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := write(c, at, body, cond)
		if err == nil {
			series.seconds.Observe(time.Since(start).Seconds())
			series.ok.Inc()
		} else {
			wr.metrics.observeFailedWrite(op, err)
		}
		if err != nil {
			return err
		}
		c.Response().Header().Set("ETag", etag(res.ETag))
		if c.QueryParam("print") == "silent" {
			return c.NoContent(http.StatusNoContent)
		}
		return writeJSON(c, http.StatusOK, res.Value)
	}
}

func handleTooDeep() echo.HandlerFunc {
	return func(echo.Context) error {
		return badRequest("invalid path: locations go at most three levels deep: /rooms/{room}/{key}/{child}")
	}
}

func handleRoomsRoot() echo.HandlerFunc {
	return func(echo.Context) error {
		return &apiError{status: http.StatusForbidden, msg: "rooms are not listed: address a room by name"}
	}
}

func location(c echo.Context) (store.Path, error) {
	return store.NewPath(c.Param("room"), c.Param("key"), c.Param("child"))
}

// readBody reads the whole body, refusing one over the store's value limit
// (413) before reading it when Content-Length says so, and reading at most
// one byte more than the limit otherwise, for the store to refuse.
func readBody(c echo.Context, st *store.Store) ([]byte, error) {
	r := c.Request()
	if err := st.CheckValueSize(r.ContentLength); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, st.MaxValueBytes()+1))
	if err != nil {
		return nil, err
	}
	return body, st.CheckValueSize(int64(len(body)))
}

// ifMatchHeader reads a request's If-Match. A header sent empty is
// malformed, not absent: it must not turn a conditional write into an
// unconditional one.
func ifMatchHeader(hdr http.Header) (store.Cond, error) {
	vs, sent := hdr["If-Match"]
	if !sent {
		return store.Cond{}, nil
	}
	h := strings.TrimSpace(strings.Join(vs, ","))
	if h == "" {
		return store.Cond{}, badRequest(`malformed If-Match: empty; want "<revision>" or null_etag`)
	}
	return ifMatch(h)
}

// ifMatch parses If-Match: "<rev>" or <rev>, or null_etag, quotes optional.
func ifMatch(h string) (store.Cond, error) { return etagCond("If-Match", h) }

// ifNoneMatch reads a GET's If-None-Match, in If-Match's forms; Set when
// one was sent. A watch has no use for it.
func ifNoneMatch(hdr http.Header, stream bool) (store.Cond, error) {
	vs, sent := hdr["If-None-Match"]
	switch {
	case !sent:
		return store.Cond{}, nil
	case stream:
		return store.Cond{}, badRequest("If-None-Match does not apply to watches: resume with Last-Event-ID")
	}
	h := strings.TrimSpace(strings.Join(vs, ","))
	if h == "" {
		return store.Cond{}, badRequest(`malformed If-None-Match: empty; want "<revision>" or null_etag`)
	}
	return etagCond("If-None-Match", h)
}

// etagCond parses an ETag condition header: "<rev>" or <rev>, or null_etag.
func etagCond(name, h string) (store.Cond, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return store.Cond{}, nil
	}
	v := strings.TrimSuffix(strings.TrimPrefix(h, `"`), `"`)
	if v == "null_etag" {
		return store.Cond{Set: true}, nil
	}
	rev, err := strconv.ParseUint(v, 10, 64)
	if err != nil || rev == 0 {
		return store.Cond{}, badRequest(`malformed ` + name + `: want "<revision>" or null_etag`)
	}
	return store.Cond{Set: true, Rev: rev}, nil
}

// etag is the ETag header of a revision, "null_etag" when nothing is stored.
func etag(rev uint64) string {
	if rev == 0 {
		return `"null_etag"`
	}
	return `"` + strconv.FormatUint(rev, 10) + `"`
}

// writeJSON writes a JSON body, indented with print=pretty.
func writeJSON(c echo.Context, status int, data []byte) error {
	if c.QueryParam("print") == "pretty" {
		var buf bytes.Buffer
		if json.Indent(&buf, data, "", "  ") == nil {
			data = append(buf.Bytes(), '\n')
		}
	}
	return c.Blob(status, contentTypeJSON, data)
}
