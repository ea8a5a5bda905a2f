// Package api serves sigbase's wire contract (shared/API.md) over HTTP with
// echo: the rooms REST API, watches as Server-Sent Events, CORS, metrics,
// health, the demo page and the browser client.
package api

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/sigbase/sigbase/store"
)

// Config is everything the HTTP layer needs besides the store. Zero fields
// take the defaults named beside them.
type Config struct {
	CORSOrigins []string // allowed origins: ["*"]

	KeepAlive    time.Duration // keep-alive after this much stream silence: 15 s
	Retry        time.Duration // the retry: hint to browsers: 1 s
	WriteTimeout time.Duration // one stream write may take this long: 10 s

	// DisconnectGrace is how long a session's onDisconnect actions wait
	// after its last stream ended for a stream to come back: 5 s.
	DisconnectGrace time.Duration

	MaxStreams        int // open streams in total: 10,000
	MaxStreamsPerIP   int // open streams per client IP: 1,000
	MaxStreamsPerRoom int // open streams per room: 1,000

	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	// Empty: the client is the direct peer.
	TrustedProxies []netip.Prefix

	ICE   ICEConfig // answers GET /ice-servers
	Auth  *Auth     // nil: auth is off and room names are capabilities
	Rate  RateLimit // requests per client IP; zero Rate: off
	Files fs.FS     // client-js: index.html at /, the rest under /client/

	Logger  *slog.Logger
	Metrics *Metrics // nil: a private set, still served at /metrics

	// Set by New, for the handlers: closed by Server.Shutdown, and the
	// streams on taken-over connections that Shutdown waits for.
	shutdown <-chan struct{}
	streams  *sync.WaitGroup
	presence *presence
}

// DefaultConfig is the defaults: what a zero field of Config means (but
// Rate, whose zero is no limit), and the defaults of sigbase serve's flags.
func DefaultConfig() Config {
	return Config{
		CORSOrigins:       []string{"*"},
		KeepAlive:         15 * time.Second,
		Retry:             time.Second,
		WriteTimeout:      10 * time.Second,
		DisconnectGrace:   5 * time.Second,
		MaxStreams:        10000,
		MaxStreamsPerIP:   1000,
		MaxStreamsPerRoom: 1000,
		ICE:               ICEConfig{TURNTTL: time.Hour},
		Rate:              RateLimit{Rate: 200, Burst: 400},
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.CORSOrigins) == 0 {
		c.CORSOrigins = d.CORSOrigins
	}
	dur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	dur(&c.KeepAlive, d.KeepAlive)
	dur(&c.Retry, d.Retry)
	dur(&c.WriteTimeout, d.WriteTimeout)
	dur(&c.DisconnectGrace, d.DisconnectGrace)
	num := func(n *int, def int) {
		if *n <= 0 {
			*n = def
		}
	}
	num(&c.MaxStreams, d.MaxStreams)
	num(&c.MaxStreamsPerIP, d.MaxStreamsPerIP)
	num(&c.MaxStreamsPerRoom, d.MaxStreamsPerRoom)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	if c.Files == nil {
		c.Files = emptyFS{}
	}
	return c
}

// Server serves sigbase's HTTP API over one store. It owns its streams:
// Shutdown ends them.
type Server struct {
	handler  http.Handler
	presence *presence
	shutdown chan struct{}
	closing  sync.Once
	streams  sync.WaitGroup // streams on connections taken over from net/http
}

// New builds the server over a store.
func New(st *store.Store, cfg Config) *Server {
	s := &Server{shutdown: make(chan struct{})}
	cfg = cfg.withDefaults()
	s.presence = newPresence(st, cfg.DisconnectGrace, cfg.Logger)
	s.presence.recover()
	cfg.shutdown, cfg.streams, cfg.presence = s.shutdown, &s.streams, s.presence
	s.handler = newHandler(st, cfg)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Shutdown turns /readyz to 503 and ends every stream with cancel, then
// waits until the streams on taken-over HTTP/1.1 connections, which
// http.Server.Shutdown does not track, have sent it and closed, or until
// ctx ends. Call it beside http.Server.Shutdown, which waits for the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Do(func() {
		s.presence.stop() // before the streams end: shutting down is no disconnect
		close(s.shutdown)
	})
	drained := make(chan struct{})
	go func() { s.streams.Wait(); close(drained) }()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("streams still open: %w", ctx.Err())
	}
}

func newHandler(st *store.Store, cfg Config) http.Handler {
	cfg.Metrics.watchStore(st)
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(discard{})
	e.HTTPErrorHandler = errorHandler(cfg.Logger)
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	e.Pre(cors(cfg.CORSOrigins), stripJSONSuffix)
	e.Use(
		requestIDs(),
		requestLogger(cfg.Logger),
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				cfg.Logger.Error("panic", "err", err, "path", c.Request().URL.Path, "stack", string(stack))
				return err
			},
		}),
	)
	if cfg.Rate.Rate > 0 {
		e.Use(rateLimiter(cfg.Rate))
	}
	routes(e, st, cfg)
	return e
}

// stripJSONSuffix makes /rooms/r1/offer.json the same as /rooms/r1/offer,
// and drops one trailing slash: names contain neither '.' nor '/'. Any other
// empty segment (/rooms/r//k, /rooms/r/k//) is a 400, so it cannot quietly
// address the location above it.
func stripJSONSuffix(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u := c.Request().URL
		for _, p := range []*string{&u.Path, &u.RawPath} {
			if !strings.HasPrefix(*p, "/rooms") {
				continue
			}
			*p = strings.TrimSuffix(*p, ".json")
			if len(*p) > len("/rooms") {
				*p = strings.TrimSuffix(*p, "/")
			}
			if strings.Contains(*p, "//") || strings.HasSuffix(*p, "/") {
				return badRequest("invalid path: empty path segment")
			}
		}
		return next(c)
	}
}

// ipExtractor picks the client address for limits: the direct peer, or the
// X-Forwarded-For entry left by the nearest trusted proxy.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		opts = append(opts, echo.TrustIPRange(prefixNet(p)))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// emptyFS stands in when no client files are given.
type emptyFS struct{}

func (emptyFS) Open(string) (fs.File, error) { return nil, fs.ErrNotExist }
