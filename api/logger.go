package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"strconv"
	"sync/atomic"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// requestLogger logs each request once it is done (a stream when it ends),
// at debug level. It logs the path without the query, which may carry an
// auth= token. Without debug logging it is left out: failures are logged by
// the error handler.
func requestLogger(log *slog.Logger) echo.MiddlewareFunc {
	if !log.Enabled(context.Background(), slog.LevelDebug) {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		HandleError: true, LogStatus: true, LogURIPath: true, LogMethod: true, LogLatency: true,
		LogRequestID: true, LogRemoteIP: true, LogError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelDebug
			if v.Status >= 500 {
				level = slog.LevelError
			}
			attrs := []slog.Attr{
				slog.String("method", v.Method), slog.String("path", v.URIPath), slog.Int("status", v.Status),
				slog.Duration("latency", v.Latency), slog.String("remote_ip", v.RemoteIP), slog.String("request_id", v.RequestID),
			}
			if v.Error != nil {
				attrs = append(attrs, slog.String("err", v.Error.Error()))
			}
			log.LogAttrs(c.Request().Context(), level, "request", attrs...)
			return nil
		},
	})
}

// requestIDs gives each request an id for the logs, X-Request-Id in the
// response: a random prefix per process and a counter, which costs nothing
// like a random string per request.
func requestIDs() echo.MiddlewareFunc {
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := base64.RawURLEncoding.EncodeToString(b[:]) + "-"
	var n atomic.Uint64
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id := c.Request().Header.Get(echo.HeaderXRequestID)
			if id == "" || len(id) > 64 {
				id = prefix + strconv.FormatUint(n.Add(1), 36)
			}
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			return next(c)
		}
	}
}
