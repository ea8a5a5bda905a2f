package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/sigbase/sigbase/store"
)

// apiError is an error with its status, made by the handlers themselves.
type apiError struct {
	status     int
	msg        string
	retryAfter int // seconds; 0: no Retry-After
}

func (e *apiError) Error() string { return e.msg }

func badRequest(msg string) error { return &apiError{status: http.StatusBadRequest, msg: msg} }

// statusTable maps store sentinels to statuses; the first match wins.
var statusTable = []struct {
	err        error
	status     int
	retryAfter int
}{
	{store.ErrInvalidPath, http.StatusBadRequest, 0},
	{store.ErrInvalidValue, http.StatusBadRequest, 0},
	{store.ErrInvalidQuery, http.StatusBadRequest, 0},
	{store.ErrConditionFailed, http.StatusPreconditionFailed, 0},
	{store.ErrValueTooLarge, http.StatusRequestEntityTooLarge, 0},
	{store.ErrTooManyKeys, http.StatusTooManyRequests, 60},
	{store.ErrTooManyChildren, http.StatusTooManyRequests, 60},
	{store.ErrRoomTooLarge, http.StatusTooManyRequests, 60},
	{store.ErrDatabaseFull, http.StatusTooManyRequests, 60},
	{store.ErrBusy, http.StatusServiceUnavailable, 1},
	{store.ErrClosed, http.StatusServiceUnavailable, 1},
	{store.ErrUnavailable, http.StatusServiceUnavailable, 1},
}

// errorHandler is the one place errors become responses: {"error": "..."}
// with the status of shared/API.md. 500s are logged; users see a generic text.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, msg, retry := classify(err)
		h := c.Response().Header()
		if retry > 0 {
			h.Set("Retry-After", strconv.Itoa(retry))
		}
		if status == http.StatusUnauthorized {
			h.Set(echo.HeaderWWWAuthenticate, `Bearer realm="sigbase"`)
		}
		if status >= 500 && status != http.StatusServiceUnavailable {
			log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path,
				"request_id", h.Get(echo.HeaderXRequestID), "err", err)
			msg = "internal server error"
		}
		var cond *store.ConditionError
		if errors.As(err, &cond) {
			h.Set("ETag", etag(cond.Rev))
			writeErr(c, status, cond.Value)
			return
		}
		writeErr(c, status, errorBody(msg))
	}
}

// errorBody is {"error": msg} as plain JSON: no HTML escaping, so a message
// quoting "<revision>" reads as written.
func errorBody(msg string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]string{"error": msg})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func writeErr(c echo.Context, status int, body []byte) {
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.Blob(status, contentTypeJSON, body)
}

func classify(err error) (status int, msg string, retryAfter int) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.msg, ae.retryAfter
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		if inner, ok := he.Internal.(*echo.HTTPError); ok {
			he = inner
		}
		msg, ok := he.Message.(string)
		if !ok {
			msg = http.StatusText(he.Code)
		}
		return he.Code, msg, 0
	}
	for _, row := range statusTable {
		if errors.Is(err, row.err) {
			return row.status, err.Error(), row.retryAfter
		}
	}
	return http.StatusInternalServerError, err.Error(), 0
}

// contentTypeJSON is the Content-Type of every JSON response, as the
// contract spells it.
const contentTypeJSON = "application/json; charset=utf-8"
