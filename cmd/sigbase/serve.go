package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sigbase/sigbase/api"
	clientjs "github.com/sigbase/sigbase/client-js"
	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/bolt"
	"github.com/sigbase/sigbase/store/etcd"
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
	etcd            *etcd.Options // from --store; nil: the bbolt file --data
}

func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (*serveConfig, error) {
	// The defaults are the packages' own, written once there.
	so, ac := store.DefaultOptions(), api.DefaultConfig()
	c := &serveConfig{corsOrigins: listFlag{items: ac.CORSOrigins}, maxBody: sizeFlag(so.Limits.MaxValueBytes),
		maxRoomBytes: sizeFlag(so.Limits.MaxRoomBytes), maxDBSize: sizeFlag(so.MaxSize)}
	fs := flag.NewFlagSet("sigbase serve", flag.ContinueOnError)
	var usage bytes.Buffer // printed for -h only: an error stays one line
	fs.SetOutput(&usage)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&c.data, "data", "sigbase.db", "database file (the embedded bbolt store)")
	fs.StringVar(&c.storeURL, "store", "", "keep rooms in etcd instead: etcd://host:2379[,host2:2379][/prefix]")
	fs.DurationVar(&c.store.OpenTimeout, "open-timeout", so.OpenTimeout, "how long to wait for another process to release the database file")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for requests to finish")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug (logs every request), info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&c.store.RoomTTL, "room-ttl", so.RoomTTL, "delete a room this long after its last write or watcher")
	fs.Var(&c.maxBody, "max-body", "request body limit (e.g. 64KiB)")
	fs.IntVar(&c.store.Limits.MaxKeys, "max-keys", so.Limits.MaxKeys, "keys per room")
	fs.IntVar(&c.store.Limits.MaxChildren, "max-children", so.Limits.MaxChildren, "children per key")
	fs.Var(&c.maxRoomBytes, "max-room-bytes", "stored bytes per room (e.g. 1MiB)")
	fs.IntVar(&c.store.Limits.MaxLogEntries, "max-log-entries", so.Limits.MaxLogEntries, "change-log entries kept per room for resume")
	fs.Var(&c.maxDBSize, "max-db-size", "database file size limit (e.g. 1GiB)")
	fs.IntVar(&c.store.WatchQueue, "watch-queue", so.WatchQueue, "changes queued for one watcher before it is dropped as too slow")
	fs.Var(&c.corsOrigins, "cors-origins", "allowed CORS origins, comma-separated, or *")
	fs.DurationVar(&c.api.KeepAlive, "keepalive", ac.KeepAlive, "send keep-alive after this much stream silence")
	fs.DurationVar(&c.api.DisconnectGrace, "disconnect-grace", ac.DisconnectGrace, "how long a session's onDisconnect writes wait for its stream to come back")
	fs.IntVar(&c.api.MaxStreams, "max-streams", ac.MaxStreams, "open streams in total (capped by the open-files limit)")
	fs.IntVar(&c.api.MaxStreamsPerIP, "max-streams-per-ip", ac.MaxStreamsPerIP, "open streams per client IP")
	fs.IntVar(&c.api.MaxStreamsPerRoom, "max-streams-per-room", ac.MaxStreamsPerRoom, "open streams per room")
	fs.Var(&c.stun, "stun", "STUN URLs for /ice-servers, comma-separated (e.g. stun:stun.example.org:3478)")
	fs.Var(&c.turn, "turn", "TURN URLs for /ice-servers, comma-separated (e.g. turn:turn.example.org:3478?transport=udp)")
	fs.StringVar(&c.api.ICE.TURNSecret, "turn-secret", "", "TURN REST shared secret (coturn static-auth-secret)")
	fs.DurationVar(&c.api.ICE.TURNTTL, "turn-ttl", ac.ICE.TURNTTL, "lifetime of minted TURN credentials")
	fs.Float64Var(&c.api.Rate.Rate, "rate-limit", ac.Rate.Rate, "requests per second per client IP (0: no limit)")
	fs.IntVar(&c.api.Rate.Burst, "rate-burst", ac.Rate.Burst, "requests a client IP may burst above --rate-limit")
	fs.BoolVar(&c.api.Rate.Loopback, "rate-limit-loopback", false, "apply --rate-limit to loopback clients too (they are exempt, for local development)")
	fs.Var(&c.trustedProxies, "trusted-proxies", "CIDRs of reverse proxies whose X-Forwarded-For names the client, comma-separated")
	c.secret.register(fs)
	c.tls.register(fs)
	if err := envFallback(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			stderr.Write(usage.Bytes())
			return nil, err
		}
		if strings.HasPrefix(err.Error(), "SIGBASE_") {
			return nil, err
		}
		return nil, fmt.Errorf("%w (sigbase serve -h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	given := givenFlags(fs, args, getenv)
	for _, cidr := range c.trustedProxies.items {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %w", err)
		}
		c.api.TrustedProxies = append(c.api.TrustedProxies, p)
	}
	c.store.Limits.MaxValueBytes = int(c.maxBody)
	c.store.Limits.MaxRoomBytes = int(c.maxRoomBytes)
	c.store.MaxSize = int(c.maxDBSize)
	c.api.CORSOrigins = c.corsOrigins.items
	c.api.ICE.STUN, c.api.ICE.TURN = c.stun.items, c.turn.items
	if err := c.check(given); err != nil {
		return nil, err
	}
	var err error
	if c.api.Auth, err = c.secret.auth(); err != nil {
		return nil, err
	}
	if c.api.Auth == nil && given.has("auth-secret-file") {
		return nil, fmt.Errorf("%s is empty: auth would be off", given.is("auth-secret-file", c.secret.file))
	}
	return c, nil
}

// given says which flags were set, on the command line or by environment,
// so a message names the one the user wrote.
type given struct {
	set map[string]bool
	env map[string]bool // set by environment only
}

func givenFlags(fs *flag.FlagSet, args []string, getenv func(string) string) given {
	g := given{set: map[string]bool{}, env: map[string]bool{}}
	cli := map[string]bool{}
	for _, a := range args {
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		cli[name] = true
	}
	fs.Visit(func(f *flag.Flag) {
		g.set[f.Name] = true
		g.env[f.Name] = !cli[f.Name] && getenv(envName(f.Name)) != ""
	})
	return g
}

// envName is the variable that sets a flag: --room-ttl is SIGBASE_ROOM_TTL.
func envName(flag string) string {
	return "SIGBASE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// is names a flag with its value: --max-keys 0, or SIGBASE_MAX_KEYS=0.
func (g given) is(flag, value string) string {
	if g.env[flag] {
		return envName(flag) + "=" + value
	}
	return "--" + flag + " " + value
}

func (g given) has(flag string) bool { return g.set[flag] }

// name is --flag, or SIGBASE_FLAG when the environment set it.
func (g given) name(flag string) string {
	if g.env[flag] {
		return envName(flag)
	}
	return "--" + flag
}

// check refuses settings that cannot work, or that would silently mean
// something other than what they say, before the store is opened or any
// port listened on. Each message is one line naming the flag.
func (c *serveConfig) check(g given) error {
	if err := checkAddr(g, "addr", c.addr); err != nil {
		return err
	}
	if c.storeURL != "" || g.has("store") {
		eo, err := parseEtcdURL(c.storeURL)
		if err != nil {
			return fmt.Errorf("%s: %w", g.is("store", strconv.Quote(c.storeURL)), err)
		}
		c.etcd = &eo
		// --data stays allowed: the container image sets it for every
		// store, and --tls-self-signed keeps its certificate beside it.
		for _, f := range []string{"open-timeout", "max-db-size"} {
			if g.has(f) {
				return fmt.Errorf("%s applies to the bbolt file, not to --store etcd: drop it", g.name(f))
			}
		}
	} else if c.data == "" {
		return fmt.Errorf("%s is empty: name the database file", g.name("data"))
	} else if st, err := os.Stat(c.data); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory: name the database file in it", g.is("data", c.data))
	}

	durations := []struct {
		flag string
		d    time.Duration
	}{
		{"open-timeout", c.store.OpenTimeout}, {"shutdown-timeout", c.shutdownTimeout},
		{"room-ttl", c.store.RoomTTL}, {"keepalive", c.api.KeepAlive}, {"disconnect-grace", c.api.DisconnectGrace}, {"turn-ttl", c.api.ICE.TURNTTL},
	}
	for _, d := range durations {
		if d.d <= 0 {
			return fmt.Errorf("%s: want a positive duration such as 10s", g.is(d.flag, d.d.String()))
		}
	}
	counts := []struct {
		flag string
		n    int64
	}{
		{"max-body", int64(c.maxBody)}, {"max-room-bytes", int64(c.maxRoomBytes)}, {"max-db-size", int64(c.maxDBSize)},
		{"max-keys", int64(c.store.Limits.MaxKeys)}, {"max-children", int64(c.store.Limits.MaxChildren)},
		{"max-log-entries", int64(c.store.Limits.MaxLogEntries)}, {"watch-queue", int64(c.store.WatchQueue)},
		{"max-streams", int64(c.api.MaxStreams)}, {"max-streams-per-ip", int64(c.api.MaxStreamsPerIP)},
		{"max-streams-per-room", int64(c.api.MaxStreamsPerRoom)},
	}
	for _, n := range counts {
		if n.n <= 0 {
			return fmt.Errorf("%s: want at least 1 (0 does not mean unlimited)", g.is(n.flag, strconv.FormatInt(n.n, 10)))
		}
	}

	if err := checkOrigins(g, c.corsOrigins.items); err != nil {
		return err
	}

	for _, u := range c.stun.items {
		if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") {
			return fmt.Errorf("%s: want a stun: or stuns: URL", g.is("stun", strconv.Quote(u)))
		}
	}
	for _, u := range c.turn.items {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
			return fmt.Errorf("%s: want a turn: or turns: URL", g.is("turn", strconv.Quote(u)))
		}
	}
	switch turn, secret := len(c.turn.items) > 0, c.api.ICE.TURNSecret != ""; {
	case turn && !secret:
		return fmt.Errorf("%s needs --turn-secret: TURN servers refuse credentials minted without it", g.name("turn"))
	case secret && !turn:
		return fmt.Errorf("%s without --turn: no TURN URL to hand credentials for", g.name("turn-secret"))
	case !turn && g.has("turn-ttl"):
		return fmt.Errorf("%s without --turn: no TURN credentials to mint", g.name("turn-ttl"))
	}

	if r := c.api.Rate.Rate; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return fmt.Errorf("%s: want requests per second, or 0 for no limit", g.is("rate-limit", fmt.Sprint(r)))
	}
	switch b := c.api.Rate.Burst; {
	case c.api.Rate.Rate > 0 && b < 1:
		return fmt.Errorf("%s: want at least 1 request", g.is("rate-burst", strconv.Itoa(b)))
	case c.api.Rate.Rate == 0 && g.has("rate-burst"):
		return fmt.Errorf("%s without a --rate-limit: rate limiting is off", g.name("rate-burst"))
	}

	switch {
	case g.has("auth-secret") && g.has("auth-secret-file"):
		return fmt.Errorf("%s and %s exclude each other: give one", g.name("auth-secret"), g.name("auth-secret-file"))
	case g.has("auth-secret") && c.secret.secret == "":
		return fmt.Errorf("%s is empty: auth would be off", g.name("auth-secret"))
	case g.has("auth-secret-file") && c.secret.file == "":
		return fmt.Errorf("%s is empty: name the file that holds the secret", g.name("auth-secret-file"))
	}

	return c.tls.check(g, c.addr)
}

// checkAddr refuses a listen address net.Listen would not take.
func checkAddr(g given, flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: want host:port, e.g. 127.0.0.1:8080 or :8080", g.is(flag, strconv.Quote(addr)))
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%s: port %q is not a number from 0 to 65535", g.is(flag, strconv.Quote(addr)), port)
	}
	return nil
}

// checkOrigins takes *, or origins as browsers send them: an Origin header
// never has a path or a trailing slash, so such an entry matches nothing.
func checkOrigins(g given, origins []string) error {
	name := g.name("cors-origins")
	if len(origins) == 0 {
		return fmt.Errorf("%s is empty: name the allowed origins, or * for any", name)
	}
	for _, o := range origins {
		if o == "*" {
			if len(origins) > 1 {
				return fmt.Errorf("%s: * allows every origin; give * alone or only origins", g.is("cors-origins", strconv.Quote(strings.Join(origins, ","))))
			}
			continue
		}
		if o == "null" {
			continue // what sandboxed frames and file: pages send
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("%s: %q is not an origin like https://app.example.org (scheme://host[:port], no path)", name, o)
		}
	}
	return nil
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
	if c.etcd == nil {
		return bolt.Open(c.data, c.store)
	}
	return etcd.Open(*c.etcd, c.store)
}

// parseEtcdURL reads etcd://host:2379,host2:2379/prefix.
func parseEtcdURL(u string) (etcd.Options, error) {
	rest, ok := strings.CutPrefix(u, "etcd://")
	if !ok || rest == "" {
		return etcd.Options{}, errors.New("want etcd://host:port[,host:port...][/prefix]")
	}
	hosts, prefix, _ := strings.Cut(rest, "/")
	var eo etcd.Options
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return etcd.Options{}, fmt.Errorf("etcd member %q: want host:port, e.g. etcd-1:2379", h)
		}
		eo.Endpoints = append(eo.Endpoints, "http://"+h)
	}
	if prefix != "" {
		eo.Prefix = "/" + strings.Trim(prefix, "/") + "/"
	}
	if len(eo.Endpoints) == 0 {
		return etcd.Options{}, errors.New("names no etcd host")
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
	c.api.Logger, c.api.Metrics, c.api.Files = log, metrics, clientjs.FS()
	handler := api.New(st, c.api)
	srv := newHTTPServer(handler, log)
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
	log.Info("serving", c.summary(ln.Addr().String(), listeners)...)
	return serveUntil(ctx, listeners, handler, c.shutdownTimeout, log)
}

// summary is the effective configuration as the attributes of the one
// startup line: where rooms live, what listens, what is on, the limits.
func (c *serveConfig) summary(addr string, listeners []served) []any {
	onOff := func(on bool) string {
		if on {
			return "on"
		}
		return "off"
	}
	attrs := []any{"version", version(), "addr", addr}
	if c.etcd == nil {
		attrs = append(attrs, "store", "bolt", "data", c.data, "max_db_size", formatSize(c.maxDBSize))
	} else {
		attrs = append(attrs, "store", "etcd", "endpoints", strings.Join(c.etcd.Endpoints, ","), "prefix", cmp.Or(c.etcd.Prefix, "/sigbase/"))
	}
	redirect := "off"
	if len(listeners) > 1 {
		redirect = listeners[1].ln.Addr().String()
	}
	rate, burst := "off", "off"
	if c.api.Rate.Rate > 0 {
		rate, burst = strconv.FormatFloat(c.api.Rate.Rate, 'g', -1, 64)+"/s", strconv.Itoa(c.api.Rate.Burst)
	}
	return append(attrs,
		"tls", c.tls.mode(), "redirect", redirect,
		"auth", onOff(c.api.Auth != nil),
		"turn", onOff(len(c.api.ICE.TURN) > 0), "stun", onOff(len(c.api.ICE.STUN) > 0),
		"cors_origins", strings.Join(c.api.CORSOrigins, ","),
		"trusted_proxies", len(c.api.TrustedProxies),
		"max_body", formatSize(c.maxBody),
		"max_keys", c.store.Limits.MaxKeys,
		"max_children", c.store.Limits.MaxChildren,
		"max_room_bytes", formatSize(c.maxRoomBytes),
		"max_log_entries", c.store.Limits.MaxLogEntries,
		"room_ttl", c.store.RoomTTL,
		"watch_queue", c.store.WatchQueue,
		"max_streams", c.api.MaxStreams,
		"max_streams_per_ip", c.api.MaxStreamsPerIP,
		"max_streams_per_room", c.api.MaxStreamsPerRoom,
		"rate_limit", rate, "rate_burst", burst, "rate_limit_loopback", c.api.Rate.Loopback,
		"keepalive", c.api.KeepAlive,
		"disconnect_grace", c.api.DisconnectGrace,
		"shutdown_timeout", c.shutdownTimeout,
	)
}

// formatSize writes a byte count the way --max-body takes it: 64KiB, 1MiB.
func formatSize(n sizeFlag) string {
	for _, u := range []struct {
		suffix string
		mult   sizeFlag
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(int64(n/u.mult), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(n), 10) + "B"
}

// served is a server and its listener.
type served struct {
	srv *http.Server
	ln  net.Listener
}

// serveUntil serves until ctx ends or a server fails, then shuts every
// server down: /readyz turns 503, streams get cancel, in-flight requests
// finish within the timeout, after which connections are closed.
func serveUntil(ctx context.Context, listeners []served, handler *api.Server, timeout time.Duration, log *slog.Logger) error {
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
	// The API's own shutdown sends every stream its cancel (HTTP/2 streams
	// included, which http.Server.Shutdown waits for) and waits for those
	// on taken-over connections.
	streamsDone := make(chan error, 1)
	go func() { streamsDone <- handler.Shutdown(sctx) }()
	for _, l := range listeners {
		if serr := l.srv.Shutdown(sctx); serr != nil {
			log.Warn("shutdown timed out; closing connections", "err", serr)
			l.srv.Close()
		}
	}
	if serr := <-streamsDone; serr != nil {
		log.Warn("shutdown timed out", "err", serr)
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
