package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sigbase/sigbase/api"
	clientjs "github.com/sigbase/sigbase/client-js"
	"github.com/sigbase/sigbase/store"
)

// serveConfig is everything `sigbase serve` is told by flags and environment.
type serveConfig struct {
	addr            string
	data            string
	storeURL        string
	shutdownTimeout time.Duration
	logLevel        string
	logFormat       string
	store           store.Options
	api             api.Config
	corsOrigins     listFlag
	stun, turn      listFlag
	maxBody         sizeFlag
	maxRoomBytes    sizeFlag
	maxDBSize       sizeFlag
	secret          secretFlags
	trustedProxies  listFlag
	tls             tlsFlags
}

func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (*serveConfig, error) {
	c := &serveConfig{corsOrigins: listFlag{items: []string{"*"}}, maxBody: 64 << 10, maxRoomBytes: 1 << 20, maxDBSize: 1 << 30}
	fs := flag.NewFlagSet("sigbase serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&c.data, "data", "sigbase.db", "database file (the embedded bbolt store)")
	fs.StringVar(&c.storeURL, "store", "", "keep rooms in etcd instead: etcd://host:2379[,host2:2379][/prefix]")
	fs.DurationVar(&c.store.OpenTimeout, "open-timeout", 5*time.Second, "how long to wait for another process to release the database file")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for requests to finish")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug (logs every request), info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&c.store.RoomTTL, "room-ttl", time.Hour, "delete a room this long after its last write or watcher")
	fs.Var(&c.maxBody, "max-body", "request body limit (e.g. 64KiB)")
	fs.IntVar(&c.store.Limits.MaxKeys, "max-keys", 256, "keys per room")
	fs.IntVar(&c.store.Limits.MaxChildren, "max-children", 1000, "children per key")
	fs.Var(&c.maxRoomBytes, "max-room-bytes", "stored bytes per room (e.g. 1MiB)")
	fs.IntVar(&c.store.Limits.MaxLogEntries, "max-log-entries", 1000, "change-log entries kept per room for resume")
	fs.Var(&c.maxDBSize, "max-db-size", "database file size limit (e.g. 1GiB)")
	fs.IntVar(&c.store.WatchQueue, "watch-queue", 1024, "changes queued for one watcher before it is dropped as too slow")
	fs.Var(&c.corsOrigins, "cors-origins", "allowed CORS origins, comma-separated, or *")
	fs.DurationVar(&c.api.KeepAlive, "keepalive", 15*time.Second, "send keep-alive after this much stream silence")
	fs.IntVar(&c.api.MaxStreams, "max-streams", 10000, "open streams in total (capped by the open-files limit)")
	fs.IntVar(&c.api.MaxStreamsPerIP, "max-streams-per-ip", 1000, "open streams per client IP")
	fs.IntVar(&c.api.MaxStreamsPerRoom, "max-streams-per-room", 1000, "open streams per room")
	fs.Var(&c.stun, "stun", "STUN URLs for /ice-servers, comma-separated (e.g. stun:stun.example.org:3478)")
	fs.Var(&c.turn, "turn", "TURN URLs for /ice-servers, comma-separated (e.g. turn:turn.example.org:3478?transport=udp)")
	fs.StringVar(&c.api.ICE.TURNSecret, "turn-secret", "", "TURN REST shared secret (coturn static-auth-secret)")
	fs.DurationVar(&c.api.ICE.TURNTTL, "turn-ttl", time.Hour, "lifetime of minted TURN credentials")
	fs.Float64Var(&c.api.Rate.Rate, "rate-limit", 200, "requests per second per client IP (0: no limit)")
	fs.IntVar(&c.api.Rate.Burst, "rate-burst", 400, "requests a client IP may burst above --rate-limit")
	fs.BoolVar(&c.api.Rate.Loopback, "rate-limit-loopback", false, "apply --rate-limit to loopback clients too (they are exempt, for local development)")
	fs.Var(&c.trustedProxies, "trusted-proxies", "CIDRs of reverse proxies whose X-Forwarded-For names the client, comma-separated")
	c.secret.register(fs)
	c.tls.register(fs)
	if err := envFallback(fs, args, getenv); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	for _, cidr := range c.trustedProxies.items {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %w", err)
		}
		c.api.TrustedProxies = append(c.api.TrustedProxies, p)
	}
	var err error
	if c.api.Auth, err = c.secret.auth(); err != nil {
		return nil, err
	}
	c.api.MaxBody = int64(c.maxBody)
	c.store.Limits.MaxValueBytes = int(c.maxBody)
	c.store.Limits.MaxRoomBytes = int(c.maxRoomBytes)
	c.store.MaxSize = int(c.maxDBSize)
	c.api.CORSOrigins = c.corsOrigins.items
	c.api.ICE.STUN, c.api.ICE.TURN = c.stun.items, c.turn.items
	return c, nil
}

func newLogger(c *serveConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", c.logFormat)
}

// serve runs the server until ctx ends or SIGINT/SIGTERM arrives, then
// shuts down: streams get cancel, in-flight writes finish, the store closes
// last, so no acknowledged write is lost.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseServeFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if limit := raiseOpenFiles(); limit > 0 && c.api.MaxStreams > limit-256 {
		c.api.MaxStreams = max(1, limit-256)
		log.Info("max streams capped by the open-files limit", "max_streams", c.api.MaxStreams)
	}
	metrics := api.NewMetrics()
	c.store.Logger = log
	c.store.OnCommit = metrics.ObserveCommit
	st, err := openStore(c)
	if err != nil {
		return err
	}
	err = listenAndServe(ctx, c, st, metrics, log, stdout)
	if cerr := st.Close(); cerr != nil && !errors.Is(cerr, store.ErrClosed) {
		err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
	}
	return err
}

// openStore opens the embedded bbolt store, or the etcd one --store names.
func openStore(c *serveConfig) (*store.Store, error) {
	if c.storeURL == "" {
		return store.Open(c.data, c.store)
	}
	eo, err := parseEtcdURL(c.storeURL)
	if err != nil {
		return nil, err
	}
	return store.OpenEtcd(eo, c.store)
}

// parseEtcdURL reads etcd://host:2379,host2:2379/prefix.
func parseEtcdURL(u string) (store.EtcdOptions, error) {
	rest, ok := strings.CutPrefix(u, "etcd://")
	if !ok || rest == "" {
		return store.EtcdOptions{}, fmt.Errorf("--store %q: want etcd://host:port[,host:port...][/prefix]", u)
	}
	hosts, prefix, _ := strings.Cut(rest, "/")
	var eo store.EtcdOptions
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			eo.Endpoints = append(eo.Endpoints, "http://"+h)
		}
	}
	if prefix != "" {
		eo.Prefix = "/" + strings.Trim(prefix, "/") + "/"
	}
	if len(eo.Endpoints) == 0 {
		return store.EtcdOptions{}, fmt.Errorf("--store %q names no etcd host", u)
	}
	return eo, nil
}

// listenAndServe serves HTTP (or HTTPS and HTTP/2, and an optional redirect
// listener) until ctx ends, then shuts down.
func listenAndServe(ctx context.Context, c *serveConfig, st *store.Store, metrics *api.Metrics, log *slog.Logger, stdout io.Writer) error {
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	shutdown, streams := make(chan struct{}), new(sync.WaitGroup)
	c.api.Logger, c.api.Metrics, c.api.Shutdown, c.api.Files, c.api.Streams = log, metrics, shutdown, clientjs.FS(), streams
	srv := newHTTPServer(api.NewServer(st, c.api), log)
	srv.RegisterOnShutdown(func() { close(shutdown) })
	scheme, note := "http", ""
	if c.tls.enabled() {
		if srv.TLSConfig, note, err = c.tls.tlsConfig(ln.Addr().String(), c.data, log); err != nil {
			ln.Close()
			return err
		}
		scheme = "https"
	}
	listeners := []served{{srv, ln}}
	if c.tls.redirectAddr != "" {
		rln, err := net.Listen("tcp", c.tls.redirectAddr)
		if err != nil {
			ln.Close()
			return err
		}
		listeners = append(listeners, served{newHTTPServer(redirectToHTTPS(ln.Addr().String()), log), rln})
		note += fmt.Sprintf("\nredirecting http://%s to https", rln.Addr())
	}
	fmt.Fprintf(stdout, "listening on %s://%s\n", scheme, displayAddr(ln.Addr()))
	if note = strings.TrimSpace(note); note != "" {
		fmt.Fprintln(stdout, note)
	}
	log.Info("serving", "addr", ln.Addr().String(), "tls", srv.TLSConfig != nil, "data", c.data, "version", version())
	return serveUntil(ctx, listeners, streams, c.shutdownTimeout, log)
}

// served is a server and its listener.
type served struct {
	srv *http.Server
	ln  net.Listener
}

// serveUntil serves until ctx ends or a server fails, then shuts every
// server down: /readyz turns 503, streams get cancel, in-flight requests
// finish within the timeout, after which connections are closed.
func serveUntil(ctx context.Context, listeners []served, streams *sync.WaitGroup, timeout time.Duration, log *slog.Logger) error {
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		if l.srv.TLSConfig != nil {
			go func() { errs <- l.srv.ServeTLS(l.ln, "", "") }()
		} else {
			// Plain HTTP gets Go's own 400/431 answers as JSON too.
			go func() { errs <- l.srv.Serve(api.JSONErrors(l.ln)) }()
		}
	}
	var err error
	select {
	case err = <-errs:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	for _, l := range listeners {
		if serr := l.srv.Shutdown(sctx); serr != nil {
			log.Warn("shutdown timed out; closing connections", "err", serr)
			l.srv.Close()
		}
	}
	drained := make(chan struct{})
	go func() { streams.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-sctx.Done():
		log.Warn("shutdown timed out with streams still open")
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// displayAddr is an address a browser on this machine can open: a wildcard
// listener ([::]:8080) is shown as 127.0.0.1:8080.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port))
}

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second, // streams replace it with a deadline per write
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// raiseOpenFiles lifts the soft open-files limit to the hard one and returns
// it (0 if unknown): each stream is a file descriptor.
func raiseOpenFiles() int {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur > 1<<30 {
		return 1 << 30
	}
	return int(lim.Cur)
}

func version() string { return strings.TrimSpace(buildVersion) }

// buildVersion is set with -ldflags "-X main.buildVersion=v1.2.3".
var buildVersion = "dev"
