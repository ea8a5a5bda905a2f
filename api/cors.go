package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// Preflight answers: the methods and request headers the API uses.
const (
	corsMethods = "GET, PUT, POST, PATCH, DELETE, OPTIONS"
	corsHeaders = "Content-Type, Authorization, If-Match, If-None-Match, Last-Event-ID, Accept, Cache-Control, X-Firebase-ETag"
	corsMaxAge  = "86400"
)

// cors runs before routing, so every response (errors, streams, unknown
// routes) carries Access-Control-Allow-Origin, and preflights for any path
// are answered 204 without reaching a handler.
func cors(origins []string) echo.MiddlewareFunc {
	all := slices.Contains(origins, "*")
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req, h := c.Request(), c.Response().Header()
			origin := req.Header.Get(echo.HeaderOrigin)
			switch {
			case all:
				h.Set(echo.HeaderAccessControlAllowOrigin, "*")
			case origin != "" && slices.Contains(origins, origin):
				h.Set(echo.HeaderAccessControlAllowOrigin, origin)
				h.Add(echo.HeaderVary, echo.HeaderOrigin)
			}
			h.Set(echo.HeaderAccessControlExposeHeaders, "ETag")
			if req.Method == http.MethodOptions && req.Header.Get(echo.HeaderAccessControlRequestMethod) != "" {
				h.Set(echo.HeaderAccessControlAllowMethods, corsMethods)
				h.Set(echo.HeaderAccessControlAllowHeaders, corsHeaders)
				h.Set(echo.HeaderAccessControlMaxAge, corsMaxAge)
				return c.NoContent(http.StatusNoContent)
			}
			return next(c)
		}
	}
}

// wantsStream reports whether a GET asks for Server-Sent Events.
func wantsStream(r *http.Request) bool {
	return strings.Contains(r.Header.Get(echo.HeaderAccept), "text/event-stream")
}
