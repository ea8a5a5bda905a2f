//go:build linux

package main

// Deployment tests: sigbase behind real nginx and Caddy on loopback, and
// coturn accepting the TURN credentials of /ice-servers. Every proxy runs
// the configuration shipped in docs/deploy/, with only addresses, ports,
// certificates and (where a test says so) timeouts substituted, so the
// documented file is the tested one.
//
// The programs come from Debian (nginx, caddy, coturn). Without them these
// tests skip, unless SIGBASE_FULL_TESTS=1 (CI), where they fail.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---- nginx ----------------------------------------------------------------

// Through nginx (docs/deploy/nginx.conf, HTTPS and HTTP/2): every event
// arrives at once, and an idle stream outlives proxy_read_timeout (2s here)
// because sigbase sends keep-alives (every 500ms here).
func TestNginxStreamsUnbufferedAndKeptAlive(t *testing.T) {
	bin := pxTool(t, "nginx", "/usr/sbin/nginx")
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "sigbase.db"), "--keepalive", "500ms")
	n := pxNginx(t, bin, s.url, "2s")
	c := pxClient(t, n.roots, "")

	// Plain HTTP answers with a redirect to HTTPS.
	if res, _ := pxDo(t, c, "GET", n.plain+"/rooms/r1?x=1", ""); res.StatusCode != 301 || res.Header.Get("Location") != "https://localhost/rooms/r1?x=1" {
		t.Errorf("plain HTTP: %d, Location %q; want 301 to https://localhost/rooms/r1?x=1", res.StatusCode, res.Header.Get("Location"))
	}
	// Bodies up to sigbase's 64KiB limit pass; larger ones get the 413 that
	// sigbase itself gives (nginx stops them first).
	body := `"` + strings.Repeat("a", 64<<10-2) + `"`
	if res, b := pxDo(t, c, "PUT", n.url+"/rooms/big/k", body); res.StatusCode != 200 {
		t.Errorf("PUT of 64KiB: %d %.200s; want 200", res.StatusCode, b)
	}
	res, b := pxDo(t, c, "PUT", n.url+"/rooms/big/k", body+" ", "Origin", "https://app.example")
	if want := `{"error":"request body over 65536 bytes"}`; res.StatusCode != 413 || string(b) != want ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") || res.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Errorf("PUT of 64KiB+1: %d %q, Content-Type %q, Access-Control-Allow-Origin %q; want 413 %s as JSON a page can read",
			res.StatusCode, b, res.Header.Get("Content-Type"), res.Header.Get("Access-Control-Allow-Origin"), want)
	}
	// gzip is on for the client script (so the check below can fail)...
	if res, _ := pxDo(t, c, "GET", n.url+"/client/sigbase.js", "", "Accept-Encoding", "gzip"); res.StatusCode != 200 || res.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("GET /client/sigbase.js: %d, Content-Encoding %q; want 200 gzip", res.StatusCode, res.Header.Get("Content-Encoding"))
	}
	// ...but never for streams.
	st := pxWatch(t, c, n.url+"/rooms/live")
	if st.res.ProtoMajor != 2 {
		t.Errorf("stream over %s; want HTTP/2 from nginx", st.res.Proto)
	}
	if ce := st.res.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("stream Content-Encoding %q; want none", ce)
	}
	pxImmediate(t, c, n.url, st, "live", 5)
	pxOutlives(t, c, n.url, st, "live", 5*time.Second)
}

// The control for the test above: without keep-alives, the same nginx
// configuration ends an idle stream after proxy_read_timeout. Events still
// arrive one by one while they keep coming.
func TestNginxCutsStreamsWithoutKeepAlive(t *testing.T) {
	bin := pxTool(t, "nginx", "/usr/sbin/nginx")
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "sigbase.db"), "--keepalive", "1h")
	n := pxNginx(t, bin, s.url, "2s")
	c := pxClient(t, n.roots, "")
	st := pxWatch(t, c, n.url+"/rooms/quiet")
	pxImmediate(t, c, n.url, st, "quiet", 3)
	pxCut(t, st, 2*time.Second)
}

// Per-IP limits see the client's address through nginx only when sigbase
// trusts it (--trusted-proxies 127.0.0.1/32): clients connect from
// 127.0.0.2 and 127.0.0.3, nginx from 127.0.0.1. A forged X-Forwarded-For
// does not escape the limit.
func TestNginxForwardedClientAddress(t *testing.T) {
	bin := pxTool(t, "nginx", "/usr/sbin/nginx")
	t.Parallel()
	// 2 requests, then one per 10s; these loopback clients stand for public ones.
	limits := []string{"--rate-limit", "0.1", "--rate-burst", "2", "--rate-limit-loopback"}
	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, nil, append(limits, "--data", filepath.Join(t.TempDir(), "db"), "--trusted-proxies", "127.0.0.1/32")...)
		n := pxNginx(t, bin, s.url, "90s")
		pxRateLimitedPerClient(t, n.url, n.roots, true)
	})
	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, nil, append(limits, "--data", filepath.Join(t.TempDir(), "db"))...)
		n := pxNginx(t, bin, s.url, "90s")
		pxRateLimitedPerClient(t, n.url, n.roots, false)
	})
}

type pxProxy struct {
	url   string         // https://localhost:PORT (any host name dials 127.0.0.1)
	plain string         // http://localhost:PORT, when the proxy has one
	roots *x509.CertPool // trusts the proxy's certificate
	ca    string         // the same as a PEM file (NODE_EXTRA_CA_CERTS)
}

// pxNginx runs docs/deploy/nginx.conf in front of the sigbase at upstream.
func pxNginx(t *testing.T, bin, upstream, readTimeout string) pxProxy {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, roots := pxSelfSigned(t, dir)
	site := pxDoc(t, "nginx.conf")
	for attempt := 1; ; attempt++ {
		ports := pxFreePorts(t, 2)
		httpsPort, httpPort := ports[0], ports[1]
		conf := site
		for _, r := range [][2]string{
			{"server 127.0.0.1:8080;", "server " + strings.TrimPrefix(upstream, "http://") + ";"},
			{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", httpPort)},
			{"listen 443 ssl http2;", fmt.Sprintf("listen 127.0.0.1:%d ssl http2;", httpsPort)},
			{"listen [::]:80;", ""},
			{"listen [::]:443 ssl http2;", ""},
			{"/etc/letsencrypt/live/sigbase.example.org/fullchain.pem", certFile},
			{"/etc/letsencrypt/live/sigbase.example.org/privkey.pem", keyFile},
			{"server_name sigbase.example.org;", "server_name localhost;"},
			{"root /var/www/html;", "root " + dir + ";"},
			{"proxy_read_timeout 90s;", "proxy_read_timeout " + readTimeout + ";"},
		} {
			conf = pxReplace(t, conf, r[0], r[1])
		}
		pxWrite(t, filepath.Join(dir, "sigbase.conf"), conf)
		pxWrite(t, filepath.Join(dir, "nginx.conf"), pxNginxMain(dir, "sigbase.conf"))
		p := pxStart(t, "nginx", nil, bin, "-p", dir+"/", "-e", "stderr", "-c", filepath.Join(dir, "nginx.conf"))
		px := pxProxy{
			url:   fmt.Sprintf("https://localhost:%d", httpsPort),
			plain: fmt.Sprintf("http://localhost:%d", httpPort),
			roots: roots,
			ca:    certFile,
		}
		if pxReady(t, p, pxClient(t, roots, ""), px.url+"/healthz", attempt) {
			return px
		}
	}
}

// ---- Caddy ----------------------------------------------------------------

// Through Caddy (docs/deploy/Caddyfile, HTTPS with its internal CA, HTTP/2):
// every event arrives at once, and an idle stream outlives the transport's
// read_timeout (2s here) because sigbase sends keep-alives. The server
// timeouts of the file (read_body shortened to 1s here) do not cut streams.
func TestCaddyStreamsUnbufferedAndKeptAlive(t *testing.T) {
	bin := pxTool(t, "caddy", "/usr/bin/caddy")
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "sigbase.db"), "--keepalive", "500ms")
	cd := pxCaddy(t, bin, s.url, "2s")
	c := pxClient(t, cd.roots, "")
	st := pxWatch(t, c, cd.url+"/rooms/live")
	if st.res.ProtoMajor != 2 {
		t.Errorf("stream over %s; want HTTP/2 from Caddy", st.res.Proto)
	}
	if ce := st.res.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("stream Content-Encoding %q; want none", ce)
	}
	pxImmediate(t, c, cd.url, st, "live", 5)
	pxOutlives(t, c, cd.url, st, "live", 5*time.Second)
}

// The control: without keep-alives, Caddy's read_timeout ends an idle stream.
func TestCaddyCutsStreamsWithoutKeepAlive(t *testing.T) {
	bin := pxTool(t, "caddy", "/usr/bin/caddy")
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "sigbase.db"), "--keepalive", "1h")
	cd := pxCaddy(t, bin, s.url, "2s")
	c := pxClient(t, cd.roots, "")
	st := pxWatch(t, c, cd.url+"/rooms/quiet")
	pxImmediate(t, c, cd.url, st, "quiet", 3)
	pxCut(t, st, 2*time.Second)
}

// Caddy replaces X-Forwarded-For with the client's address; sigbase,
// trusting Caddy, limits each client on its own.
func TestCaddyForwardedClientAddress(t *testing.T) {
	bin := pxTool(t, "caddy", "/usr/bin/caddy")
	t.Parallel()
	s := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"), "--rate-limit", "0.1", "--rate-burst", "2", "--rate-limit-loopback", "--trusted-proxies", "127.0.0.1/32")
	cd := pxCaddy(t, bin, s.url, "90s")
	pxRateLimitedPerClient(t, cd.url, cd.roots, true)
}

// pxCaddy runs docs/deploy/Caddyfile in front of the sigbase at upstream,
// with test-only global options: no admin API, no system trust store, the
// internal CA, free loopback ports, storage in a temporary directory.
func pxCaddy(t *testing.T, bin, upstream, readTimeout string) pxProxy {
	t.Helper()
	dir := t.TempDir()
	doc := pxDoc(t, "Caddyfile")
	doc = pxReplace(t, doc, "read_timeout 90s", "read_timeout "+readTimeout)
	doc = pxReplace(t, doc, "read_body 30s", "read_body 1s")
	open := regexp.MustCompile(`(?m)^\{$`)
	if !open.MatchString(doc) {
		t.Fatal("docs/deploy/Caddyfile has no global options block (a line with just '{')")
	}
	storage := filepath.Join(dir, "storage")
	for attempt := 1; ; attempt++ {
		ports := pxFreePorts(t, 2)
		httpPort, httpsPort := ports[0], ports[1]
		global := fmt.Sprintf("{\n\tadmin off\n\tskip_install_trust\n\tlocal_certs\n\tauto_https disable_redirects\n\tdefault_bind 127.0.0.1\n\thttp_port %d\n\thttps_port %d\n\tstorage file_system %s\n", httpPort, httpsPort, storage)
		file := filepath.Join(dir, "Caddyfile")
		pxWrite(t, file, open.ReplaceAllLiteralString(doc, global))
		env := []string{
			"PATH=" + os.Getenv("PATH"),
			"HOME=" + dir,
			"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
			"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
			"SIGBASE_DOMAIN=localhost",
			"SIGBASE_UPSTREAM=" + strings.TrimPrefix(upstream, "http://"),
		}
		p := pxStart(t, "caddy", env, bin, "run", "--config", file, "--adapter", "caddyfile")
		rootFile := filepath.Join(storage, "pki", "authorities", "local", "root.crt")
		roots := x509.NewCertPool()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if b, err := os.ReadFile(rootFile); err == nil && roots.AppendCertsFromPEM(b) {
				break
			}
			if p.exited() || time.Now().After(deadline) {
				break // pxReady reports it
			}
			time.Sleep(20 * time.Millisecond)
		}
		px := pxProxy{url: fmt.Sprintf("https://localhost:%d", httpsPort), roots: roots, ca: rootFile}
		if pxReady(t, p, pxClient(t, roots, ""), px.url+"/healthz", attempt) {
			return px
		}
	}
}

// ---- what every proxy must do ---------------------------------------------

// pxImmediate writes n values to a room, spaced apart, and expects each
// event on the stream within 500ms of the write's acknowledgement: a
// buffering proxy would hold these small frames back.
func pxImmediate(t *testing.T, c *http.Client, base string, st *pxStream, room string, n int) {
	t.Helper()
	var slowest time.Duration
	for i := range n {
		time.Sleep(200 * time.Millisecond)
		key := fmt.Sprintf("k%d", i)
		if res, b := pxDo(t, c, "PUT", base+"/rooms/"+room+"/"+key, fmt.Sprintf(`"v%d"`, i)); res.StatusCode != 200 {
			t.Fatalf("PUT %s: %d %s", key, res.StatusCode, b)
		}
		acked := time.Now()
		ev := st.next(t, 500*time.Millisecond)
		want := fmt.Sprintf(`{"path":"/%s","data":"v%d"}`, key, i)
		if ev.event != "put" || ev.data != want {
			t.Fatalf("event %d: %s %s; want put %s", i, ev.event, ev.data, want)
		}
		slowest = max(slowest, time.Since(acked))
	}
	t.Logf("%d events, slowest %v after the write's acknowledgement", n, slowest)
}

// pxOutlives keeps an idle stream open for d, longer than the proxy's read
// timeout, and expects it to be alive afterwards: keep-alives flowed and an
// event still arrives.
func pxOutlives(t *testing.T, c *http.Client, base string, st *pxStream, room string, d time.Duration) {
	t.Helper()
	before := st.keepAlives.Load()
	select {
	case <-st.ended:
		t.Fatalf("stream ended while idle: %v", st.err)
	case <-time.After(d):
	}
	if got := st.keepAlives.Load() - before; got < 3 {
		t.Errorf("%d keep-alives in %v; want several", got, d)
	}
	if res, b := pxDo(t, c, "PUT", base+"/rooms/"+room+"/after", `"idle"`); res.StatusCode != 200 {
		t.Fatalf("PUT after idling: %d %s", res.StatusCode, b)
	}
	if ev := st.next(t, 500*time.Millisecond); ev.data != `{"path":"/after","data":"idle"}` {
		t.Fatalf("after idling: %s %s", ev.event, ev.data)
	}
}

// pxCut expects a stream whose last frame came just now to be ended by the
// proxy about timeout later, neither much sooner nor much later.
func pxCut(t *testing.T, st *pxStream, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case <-st.ended:
		if d := time.Since(start); d < timeout*3/4 {
			t.Fatalf("stream ended after %v, before the proxy's %v timeout: %v", d, timeout, st.err)
		}
		t.Logf("an idle stream without keep-alives ended after %v (%v)", time.Since(start), st.err)
	case <-time.After(timeout + 8*time.Second):
		t.Fatalf("an idle stream without keep-alives outlived the proxy's %v read timeout: the test does not exercise it", timeout)
	}
}

// pxRateLimitedPerClient checks, with sigbase at --rate-burst 2 and a slow
// refill, that clients at 127.0.0.2 and 127.0.0.3 have their own limits
// exactly when sigbase trusts the proxy.
func pxRateLimitedPerClient(t *testing.T, base string, roots *x509.CertPool, trusted bool) {
	t.Helper()
	a, b := pxClient(t, roots, "127.0.0.2"), pxClient(t, roots, "127.0.0.3")
	for i := range 2 {
		if res, body := pxDo(t, a, "GET", base+"/rooms/r1", ""); res.StatusCode != 200 {
			t.Fatalf("request %d from 127.0.0.2: %d %s", i+1, res.StatusCode, body)
		}
	}
	if trusted {
		res, _ := pxDo(t, a, "GET", base+"/rooms/r1", "", "X-Forwarded-For", "203.0.113.7")
		if res.StatusCode != 429 {
			t.Errorf("3rd request from 127.0.0.2, forging X-Forwarded-For: %d; want 429", res.StatusCode)
		}
	}
	want := 200 // its own bucket
	if !trusted {
		want = 429 // everyone is the proxy
	}
	if res, _ := pxDo(t, b, "GET", base+"/rooms/r1", ""); res.StatusCode != want {
		t.Errorf("first request from 127.0.0.3 (trusted proxy: %v): %d; want %d", trusted, res.StatusCode, want)
	}
}

// ---- coturn ---------------------------------------------------------------

// The credentials of GET /ice-servers work on coturn run with
// docs/deploy/turnserver.conf and the same secret: a TURN Allocate over UDP
// succeeds (and coturn's answer is signed with the same key); credentials
// minted with another secret get 401.
func TestProxyCoturnAcceptsICEServersCredentials(t *testing.T) {
	bin := pxTool(t, "turnserver", "/usr/bin/turnserver")
	t.Parallel()
	const secret = "a-shared-turn-secret-for-tests"
	turn := pxCoturn(t, bin, secret)
	good := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"),
		"--stun", "stun:"+turn, "--turn", "turn:"+turn+"?transport=udp", "--turn-secret", secret)
	wrong := startServer(t, nil, "--data", filepath.Join(t.TempDir(), "db"),
		"--turn", "turn:"+turn+"?transport=udp", "--turn-secret", "not-the-secret-coturn-has")

	addr, user, pass := pxICEServers(t, good.url)
	if addr != turn {
		t.Fatalf("TURN address %s in /ice-servers; want %s", addr, turn)
	}
	relayed, code, err := pxAllocate(addr, user, pass)
	if err != nil || code != 0 {
		t.Fatalf("Allocate with /ice-servers credentials: error code %d, %v", code, err)
	}
	if relayed.Addr() != netip.MustParseAddr("127.0.0.1") || relayed.Port() == 0 {
		t.Errorf("relayed address %v; want 127.0.0.1:port", relayed)
	}

	addr, user, pass = pxICEServers(t, wrong.url)
	if _, code, err := pxAllocate(addr, user, pass); err != nil || code != 401 {
		t.Fatalf("Allocate with credentials of another secret: error code %d, %v; want 401", code, err)
	}
}

// pxCoturn runs docs/deploy/turnserver.conf on 127.0.0.1 and returns the
// address of its STUN/TURN port once it answers a STUN Binding request.
func pxCoturn(t *testing.T, bin, secret string) string {
	t.Helper()
	dir := t.TempDir()
	doc := pxDoc(t, "turnserver.conf")
	for attempt := 1; ; attempt++ {
		port := pxFreePorts(t, 1)[0]
		conf := pxReplace(t, doc, "\nlistening-port=3478\n", fmt.Sprintf("\nlistening-port=%d\n", port))
		conf += fmt.Sprintf("\n# test only\nlistening-ip=127.0.0.1\nrelay-ip=127.0.0.1\npidfile=%[1]s/turnserver.pid\nuserdb=%[1]s/turndb\n", dir)
		file := filepath.Join(dir, "turnserver.conf")
		pxWrite(t, file, conf)
		p := pxStart(t, "turnserver", nil, bin, "-c", file, "--static-auth-secret="+secret, "--realm=sigbase.test")
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		conn, err := net.Dial("udp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			if m, err := stunRoundTrip(conn, stunEncode(stunBindingRequest, stunTID(), nil, nil), 1); err == nil && m.typ == stunBindingSuccess {
				conn.Close()
				return addr
			}
			if p.exited() {
				if attempt < 3 && strings.Contains(p.out.String(), "in use") {
					break // the port was taken meanwhile: try another
				}
				conn.Close()
				t.Fatalf("turnserver exited: %v\n%s", p.err, p.out)
			}
			if time.Now().After(deadline) {
				t.Fatalf("turnserver never answered STUN on %s:\n%s", addr, p.out)
			}
			time.Sleep(50 * time.Millisecond)
		}
		conn.Close()
		p.stop()
	}
}

// pxICEServers reads GET /ice-servers and returns the TURN server's
// host:port and credentials.
func pxICEServers(t *testing.T, base string) (addr, user, pass string) {
	t.Helper()
	res, body := pxDo(t, http.DefaultClient, "GET", base+"/ice-servers", "")
	var got struct {
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"iceServers"`
	}
	if err := json.Unmarshal(body, &got); res.StatusCode != 200 || err != nil {
		t.Fatalf("GET /ice-servers: %d %s (%v)", res.StatusCode, body, err)
	}
	for _, s := range got.ICEServers {
		for _, u := range s.URLs {
			if rest, ok := strings.CutPrefix(u, "turn:"); ok {
				addr, _, _ = strings.Cut(rest, "?")
				return addr, s.Username, s.Credential
			}
		}
	}
	t.Fatalf("no turn: URL in /ice-servers: %s", body)
	return
}

// A minimal STUN/TURN client (RFC 5389, RFC 5766): Allocate over UDP with
// the long-term credential mechanism.
const (
	stunMagic            = 0x2112A442
	stunBindingRequest   = 0x0001
	stunBindingSuccess   = 0x0101
	turnAllocateRequest  = 0x0003
	turnAllocateSuccess  = 0x0103
	turnAllocateError    = 0x0113
	attrUsername         = 0x0006
	attrMessageIntegrity = 0x0008
	attrErrorCode        = 0x0009
	attrRealm            = 0x0014
	attrNonce            = 0x0015
	attrXORRelayed       = 0x0016
	attrRequestedTransp  = 0x0019
)

type stunAttr struct {
	typ uint16
	val []byte
}

type stunMsg struct {
	typ   uint16
	tid   [12]byte
	attrs []stunAttr
	raw   []byte
	miAt  int // offset of MESSAGE-INTEGRITY in raw, or -1
}

func (m *stunMsg) attr(typ uint16) []byte {
	for _, a := range m.attrs {
		if a.typ == typ {
			return a.val
		}
	}
	return nil
}

func stunTID() (tid [12]byte) {
	_, _ = rand.Read(tid[:])
	return tid
}

func stunAppendAttr(b []byte, typ uint16, val []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(val)))
	b = append(b, val...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// stunEncode builds a message; with a key it ends with MESSAGE-INTEGRITY,
// an HMAC-SHA1 over the message whose length already counts that attribute.
func stunEncode(typ uint16, tid [12]byte, attrs []stunAttr, key []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, typ)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint32(b, stunMagic)
	b = append(b, tid[:]...)
	for _, a := range attrs {
		b = stunAppendAttr(b, a.typ, a.val)
	}
	if key != nil {
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20+24))
		mac := hmac.New(sha1.New, key)
		mac.Write(b)
		b = stunAppendAttr(b, attrMessageIntegrity, mac.Sum(nil))
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b
}

func stunDecode(b []byte) (*stunMsg, error) {
	if len(b) < 20 || binary.BigEndian.Uint32(b[4:]) != stunMagic || int(binary.BigEndian.Uint16(b[2:]))+20 != len(b) {
		return nil, fmt.Errorf("not a STUN message: % x", b[:min(len(b), 20)])
	}
	m := &stunMsg{typ: binary.BigEndian.Uint16(b), raw: b, miAt: -1}
	copy(m.tid[:], b[8:20])
	for off := 20; off+4 <= len(b); {
		typ, n := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		if off+4+n > len(b) {
			return nil, errors.New("truncated STUN attribute")
		}
		if typ == attrMessageIntegrity {
			m.miAt = off
		}
		m.attrs = append(m.attrs, stunAttr{typ, b[off+4 : off+4+n]})
		off += 4 + (n+3)/4*4
	}
	return m, nil
}

// integrityOK checks the MESSAGE-INTEGRITY of a received message.
func (m *stunMsg) integrityOK(key []byte) bool {
	if m.miAt < 0 {
		return false
	}
	b := bytes.Clone(m.raw[:m.miAt])
	binary.BigEndian.PutUint16(b[2:], uint16(m.miAt-20+24))
	mac := hmac.New(sha1.New, key)
	mac.Write(b)
	return hmac.Equal(mac.Sum(nil), m.raw[m.miAt+4:m.miAt+24])
}

// stunRoundTrip sends a request over UDP, resending it every 500ms up to
// tries times, and returns the answer with the same transaction id.
func stunRoundTrip(conn net.Conn, req []byte, tries int) (*stunMsg, error) {
	buf := make([]byte, 1500)
	for range tries {
		if _, err := conn.Write(req); err != nil {
			return nil, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break // timeout (or ICMP unreachable): send again
			}
			m, err := stunDecode(bytes.Clone(buf[:n]))
			if err == nil && bytes.Equal(m.tid[:], req[8:20]) {
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("no STUN answer from %s", conn.RemoteAddr())
}

// pxAllocate asks the TURN server for a UDP relay with long-term
// credentials: a first Allocate learns realm and nonce from the 401, the
// second is signed with MD5(user:realm:pass). It returns the relayed address
// on success, or the error code of the refusal. Both requests come from one
// socket: coturn ties the nonce to the client's address and port.
func pxAllocate(addr, user, pass string) (relayed netip.AddrPort, code int, err error) {
	conn, err := net.Dial("udp4", addr)
	if err != nil {
		return relayed, 0, err
	}
	defer conn.Close()
	udp := []stunAttr{{attrRequestedTransp, []byte{17, 0, 0, 0}}}
	m, err := stunRoundTrip(conn, stunEncode(turnAllocateRequest, stunTID(), udp, nil), 6)
	if err != nil {
		return relayed, 0, err
	}
	if m.typ != turnAllocateError || stunErrorCode(m) != 401 || m.attr(attrRealm) == nil || m.attr(attrNonce) == nil {
		return relayed, 0, fmt.Errorf("unauthenticated Allocate: type %#04x code %d; want 401 with realm and nonce", m.typ, stunErrorCode(m))
	}
	realm, nonce := m.attr(attrRealm), m.attr(attrNonce)
	sum := md5.Sum([]byte(user + ":" + string(realm) + ":" + pass))
	key := sum[:]
	attrs := append(udp, stunAttr{attrUsername, []byte(user)}, stunAttr{attrRealm, realm}, stunAttr{attrNonce, nonce})
	m, err = stunRoundTrip(conn, stunEncode(turnAllocateRequest, stunTID(), attrs, key), 6)
	if err != nil {
		return relayed, 0, err
	}
	switch m.typ {
	case turnAllocateError:
		return relayed, stunErrorCode(m), nil
	case turnAllocateSuccess:
	default:
		return relayed, 0, fmt.Errorf("Allocate answered with type %#04x", m.typ)
	}
	if !m.integrityOK(key) {
		return relayed, 0, errors.New("Allocate success without a valid MESSAGE-INTEGRITY")
	}
	x := m.attr(attrXORRelayed)
	if len(x) != 8 || x[1] != 1 {
		return relayed, 0, fmt.Errorf("XOR-RELAYED-ADDRESS % x: want IPv4", x)
	}
	port := binary.BigEndian.Uint16(x[2:]) ^ (stunMagic >> 16)
	var ip [4]byte
	binary.BigEndian.PutUint32(ip[:], binary.BigEndian.Uint32(x[4:])^stunMagic)
	return netip.AddrPortFrom(netip.AddrFrom4(ip), port), 0, nil
}

func stunErrorCode(m *stunMsg) int {
	v := m.attr(attrErrorCode)
	if len(v) < 4 {
		return 0
	}
	return int(v[2]&7)*100 + int(v[3])
}

// ---- plumbing -------------------------------------------------------------

// pxTool finds a program from Debian. CI sets SIGBASE_FULL_TESTS=1, where a
// missing program fails the test; elsewhere the test skips.
func pxTool(t *testing.T, name, path string) string {
	t.Helper()
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return path
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	pkg := map[string]string{"turnserver": "coturn", "etcd": "etcd-server"}[name]
	if pkg == "" {
		pkg = name
	}
	msg := fmt.Sprintf("%s is not installed (apt-get install %s)", path, pkg)
	if os.Getenv("SIGBASE_FULL_TESTS") == "1" {
		t.Fatal(msg + "; SIGBASE_FULL_TESTS=1 needs it")
	}
	t.Skip(msg + "; skipping (SIGBASE_FULL_TESTS=1 makes this a failure)")
	return ""
}

// pxDoc reads a file of docs/deploy.
func pxDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pxReplace substitutes a value of a documented file; a value the file no
// longer has fails the test rather than silently testing something else.
func pxReplace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("docs/deploy no longer contains %q: update %s", old, "cmd/sigbase/proxy_test.go")
	}
	return strings.ReplaceAll(s, old, new)
}

func pxWrite(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pxFreePorts returns n distinct ports free on 127.0.0.1 for both TCP and
// UDP just now (Caddy serves HTTP/3 on UDP, coturn STUN on both).
func pxFreePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100 {
			t.Fatal("no free ports")
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		if pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			held = append(held, pc)
			ports = append(ports, port)
		}
	}
	return ports
}

// pxSelfSigned writes a certificate for localhost and 127.0.0.1.
func pxSelfSigned(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pxWrite(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	pxWrite(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// pxProc is an external program run for one test, in its own process group.
type pxProc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func pxStart(t *testing.T, name string, env []string, args ...string) *pxProc {
	t.Helper()
	p := &pxProc{name: name, cmd: exec.Command(args[0], args[1:]...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *pxProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the program: SIGTERM, then SIGKILL to its process group.
func (p *pxProc) stop() {
	if p.exited() {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(3 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// pxReady waits until url answers 200 through the proxy. If the proxy
// exited because a port was taken meanwhile, it returns false so the
// caller retries with other ports (up to 3 attempts).
func pxReady(t *testing.T, p *pxProc, c *http.Client, url string, attempt int) bool {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		res, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			last = res.Status
			if res.StatusCode == 200 {
				cancel()
				return true
			}
		} else {
			last = err.Error()
		}
		cancel()
		if p.exited() {
			if attempt < 3 && strings.Contains(p.out.String(), "in use") {
				return false
			}
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %s (last: %s):\n%s", p.name, url, last, p.out)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// pxClient connects as a browser on this machine would: every host name is
// 127.0.0.1, certificates are checked against roots, HTTP/2 when offered,
// no transparent gzip. With src, connections come from that address.
func pxClient(t *testing.T, roots *x509.CertPool, src string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", port))
		},
		TLSClientConfig:    &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// pxDo makes one request (headers as name, value pairs) within 10s and
// returns the response with its body read.
func pxDo(t *testing.T, c *http.Client, method, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return res, b
}

type pxEvent struct{ id, event, data string }

// pxStream is an open watch: its events (keep-alives counted, not queued).
type pxStream struct {
	res        *http.Response
	events     chan pxEvent
	keepAlives atomic.Int64
	ended      chan struct{} // closed when the stream ends; err says why
	err        error
}

// pxWatch opens a stream (asking for gzip, which must not be applied) and
// waits for its first event, the snapshot.
func pxWatch(t *testing.T, c *http.Client, url string) *pxStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Accept-Encoding", "gzip")
	timer := time.AfterFunc(10*time.Second, cancel)
	res, err := c.Do(req)
	timer.Stop()
	if err != nil {
		t.Fatalf("watch %s: %v", url, err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1000))
		res.Body.Close()
		t.Fatalf("watch %s: %s %q %s", url, res.Status, res.Header.Get("Content-Type"), b)
	}
	st := &pxStream{res: res, events: make(chan pxEvent, 64), ended: make(chan struct{})}
	go st.read(ctx)
	if ev := st.next(t, 5*time.Second); ev.event != "put" || !strings.HasPrefix(ev.data, `{"path":"/",`) {
		t.Fatalf("first event %s %s; want the snapshot", ev.event, ev.data)
	}
	return st
}

func (st *pxStream) read(ctx context.Context) {
	defer close(st.ended)
	defer st.res.Body.Close()
	br := bufio.NewReader(st.res.Body)
	var ev pxEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // streams never end cleanly on their own
			}
			st.err = err
			return
		}
		line = strings.TrimRight(line, "\r\n")
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			ev.data = value
		case "":
			switch {
			case ev.event == "keep-alive":
				st.keepAlives.Add(1)
			case ev != pxEvent{}:
				select {
				case st.events <- ev:
				case <-ctx.Done():
					return
				}
			}
			ev = pxEvent{}
		}
	}
}

// next returns the next event other than keep-alive within d.
func (st *pxStream) next(t *testing.T, d time.Duration) pxEvent {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ev := <-st.events:
		return ev
	case <-st.ended:
		select { // what was read before the end
		case ev := <-st.events:
			return ev
		default:
		}
		t.Fatalf("stream ended: %v", st.err)
	case <-timer.C:
		t.Fatalf("no event within %v", d)
	}
	return pxEvent{}
}

// pxNginxMain is the main nginx.conf around a server config in dir: in the
// foreground, everything under dir, logs to stderr.
func pxNginxMain(dir, include string) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers write request bodies under dir, which is root's
	}
	return fmt.Sprintf(`%s
worker_processes 1;
daemon off;
pid %[2]s/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	include %[2]s/%[3]s;
}
`, user, dir, include)
}
