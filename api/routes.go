package api

import (
	"github.com/labstack/echo/v4"

	"github.com/sigbase/sigbase/store"
)

// Location patterns: a room, a key, a child.
const (
	roomPath  = "/rooms/:room"
	keyPath   = "/rooms/:room/:key"
	childPath = "/rooms/:room/:key/:child"
)

// routes is the endpoint table of shared/API.md, in its order. A GET with
// Accept: text/event-stream is a watch. Methods a location lacks answer 405
// with Allow; deeper paths 400; /rooms itself 403.
func routes(e *echo.Echo, st *store.Store, cfg Config) {
	ws := &watches{
		gate:     newStreamGate(cfg.MaxStreams, cfg.MaxStreamsPerIP, cfg.MaxStreamsPerRoom),
		presence: cfg.presence, keepAlive: cfg.KeepAlive, retry: cfg.Retry, writeTimeout: cfg.WriteTimeout,
		metrics: cfg.Metrics, log: cfg.Logger, shutdown: cfg.shutdown, running: cfg.streams,
	}
	wr := writes{st: st, auth: cfg.Auth, metrics: cfg.Metrics}
	e.GET(roomPath, handleRead(st, cfg.Auth, ws))
	e.GET(keyPath, handleRead(st, cfg.Auth, ws))
	e.GET(childPath, handleRead(st, cfg.Auth, ws))
	e.PUT(roomPath, handlePut(wr))
	e.PUT(keyPath, handlePut(wr))
	e.PUT(childPath, handlePut(wr))
	e.POST(keyPath, handlePush(wr))
	e.PATCH(roomPath, handlePatch(wr))
	e.PATCH(keyPath, handlePatch(wr))
	e.DELETE(roomPath, handleDelete(wr))
	e.DELETE(keyPath, handleDelete(wr))
	e.DELETE(childPath, handleDelete(wr))
	e.Any(childPath+"/*", handleTooDeep())
	e.Any("/rooms", handleRoomsRoot())
	e.GET("/healthz", handleHealth())
	e.GET("/readyz", handleReady(cfg.shutdown))
	e.GET("/metrics", echo.WrapHandler(cfg.Metrics.Handler()), requireToken(cfg.Auth, "metrics"))
	e.GET("/", handleDemo(cfg.Files))
	e.GET("/client/*", handleClientFile(cfg.Files))
	e.GET("/ice-servers", handleICEServers(cfg.ICE), requireToken(cfg.Auth, PermRead))
}
