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
	gate := newStreamGate(cfg)
	e.GET(roomPath, handleRead(st, cfg, gate))
	e.GET(keyPath, handleRead(st, cfg, gate))
	e.GET(childPath, handleRead(st, cfg, gate))
	e.PUT(roomPath, handlePut(st, cfg))
	e.PUT(keyPath, handlePut(st, cfg))
	e.PUT(childPath, handlePut(st, cfg))
	e.POST(keyPath, handlePush(st, cfg))
	e.PATCH(roomPath, handlePatch(st, cfg))
	e.PATCH(keyPath, handlePatch(st, cfg))
	e.DELETE(roomPath, handleDelete(st, cfg))
	e.DELETE(keyPath, handleDelete(st, cfg))
	e.DELETE(childPath, handleDelete(st, cfg))
	e.Any(childPath+"/*", handleTooDeep())
	e.Any("/rooms", handleRoomsRoot())
	e.GET("/healthz", handleHealth())
	e.GET("/readyz", handleReady(cfg.shutdown))
	e.GET("/metrics", echo.WrapHandler(cfg.Metrics.Handler()), requireToken(cfg.Auth, "metrics"))
	e.GET("/", handleDemo(cfg.Files))
	e.GET("/client/*", handleClientFile(cfg.Files))
	e.GET("/ice-servers", handleICEServers(cfg.ICE), requireToken(cfg.Auth, PermRead))
}
