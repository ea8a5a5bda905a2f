package api

import (
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
)

// handleDemo serves the demo page. It loads only same-origin scripts and
// styles; media and the data channel need nothing from elsewhere.
func handleDemo(files fs.FS) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
		return serveFile(c, files, "index.html")
	}
}

// handleClientFile serves client-js as shipped: /client/sigbase.js and the rest.
func handleClientFile(files fs.FS) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("X-Content-Type-Options", "nosniff")
		return serveFile(c, files, c.Param("*"))
	}
}

func serveFile(c echo.Context, files fs.FS, name string) error {
	name = path.Clean(strings.TrimPrefix(name, "/"))
	st, err := fs.Stat(files, name)
	if err != nil || st.IsDir() || !fs.ValidPath(name) {
		return echo.ErrNotFound
	}
	h := c.Response().Header()
	switch path.Ext(name) {
	case ".js", ".mjs":
		h.Set(echo.HeaderContentType, "text/javascript; charset=utf-8")
	case ".ts":
		h.Set(echo.HeaderContentType, "text/plain; charset=utf-8") // sigbase.d.ts, not MPEG-TS
	}
	h.Set(echo.HeaderCacheControl, "no-cache")
	http.ServeFileFS(c.Response(), c.Request(), files, name)
	return nil
}

func handleHealth() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.Blob(http.StatusOK, contentTypeJSON, []byte(`{"status":"ok"}`))
	}
}

// handleReady answers 503 once shutdown has begun, so a balancer stops
// sending new requests while streams are told to move.
func handleReady(shutdown <-chan struct{}) echo.HandlerFunc {
	return func(c echo.Context) error {
		select {
		case <-shutdown:
			return &apiError{status: http.StatusServiceUnavailable, msg: "shutting down", retryAfter: 1}
		default:
		}
		return c.Blob(http.StatusOK, contentTypeJSON, []byte(`{"status":"ready"}`))
	}
}
