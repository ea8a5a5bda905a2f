package api

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sigbase/sigbase/store"
)

const testSecret = "0123456789abcdef-test-secret"

func newAuthServer(t *testing.T, cfg Config, opts store.Options) (*testServer, *Auth) {
	t.Helper()
	a, err := NewAuth([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Auth = a
	return newTestServer(t, cfg, opts), a
}

func mint(t *testing.T, a *Auth, room string, ttl time.Duration, perms ...string) string {
	t.Helper()
	tok, err := a.Mint(room, perms, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// With auth on: 401 without a valid token, 403 for the wrong room or
// permission, and every other row of the error table as before; none of
// them changes anything.
func TestAuthErrorTable(t *testing.T) {
	parallel(t)
	ts, a := newAuthServer(t, Config{}, store.Options{Limits: store.Limits{MaxValueBytes: 1024, MaxKeys: 1}})
	rw := "Bearer " + mint(t, a, "r1", time.Hour, PermRead, PermWrite)
	ts.mustDo(200, "PUT", "/rooms/r1/offer", `"o"`, "Authorization", rw)
	rev := ts.st.Stats().Revision
	exp := time.Now().Add(-time.Minute).Unix()
	rows := []struct {
		name, method, path, body, auth string
		status                         int
	}{
		{"no token", "GET", "/rooms/r1", "", "", 401},
		{"no token, write", "PUT", "/rooms/r1/k", "1", "", 401},
		{"not a JWT", "GET", "/rooms/r1", "", "Bearer nonsense", 401},
		{"other secret", "GET", "/rooms/r1", "", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte("another-secret-0123456"), jwt.MapClaims{"room": "r1", "perm": []string{"read"}, "exp": time.Now().Add(time.Hour).Unix()}), 401},
		{"alg none", "GET", "/rooms/r1", "", "Bearer " + signed(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"room": "r1", "perm": "read", "exp": time.Now().Add(time.Hour).Unix()}), 401},
		{"HS512", "GET", "/rooms/r1", "", "Bearer " + signed(t, jwt.SigningMethodHS512, []byte(testSecret), jwt.MapClaims{"room": "r1", "perm": "read", "exp": time.Now().Add(time.Hour).Unix()}), 401},
		{"no exp", "GET", "/rooms/r1", "", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"room": "r1", "perm": "read"}), 401},
		{"expired", "PUT", "/rooms/r1/k", "1", "Bearer " + signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"room": "r1", "perm": "read,write", "exp": exp}), 401},
		{"Basic scheme", "GET", "/rooms/r1", "", "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), 401},
		{"other room", "GET", "/rooms/r2", "", rw, 403},
		{"read only", "PUT", "/rooms/r1/k", "1", "Bearer " + mint(t, a, "r1", time.Hour, PermRead), 403},
		{"write only", "GET", "/rooms/r1", "", "Bearer " + mint(t, a, "*", time.Hour, PermWrite), 403},
		{"malformed", "PUT", "/rooms/r1/k", "{", rw, 400},
		{"bad name", "PUT", "/rooms/r1/a.b", "1", rw, 400},
		{"too deep", "PUT", "/rooms/r1/a/b/c", "1", rw, 400},
		{"rooms root", "GET", "/rooms", "", rw, 403},
		{"unknown route", "GET", "/nope", "", rw, 404},
		{"method", "POST", "/rooms/r1", "1", rw, 405},
		{"If-Match", "PUT", "/rooms/r1/offer", `"p"`, rw, 412},
		{"too large", "PUT", "/rooms/r1/offer", `"` + strings.Repeat("x", 2000) + `"`, rw, 413},
		{"quota", "PUT", "/rooms/r1/k2", "1", rw, 429},
	}
	for _, row := range rows {
		headers := []string{"Authorization", row.auth}
		if row.name == "If-Match" {
			headers = append(headers, "If-Match", ts.etag(999))
		}
		res := ts.do(row.method, row.path, row.body, headers...)
		if res.status != row.status || (row.status != 412 && !strings.HasPrefix(res.body, `{"error":"`)) {
			t.Errorf("%s: %s %s: got %d %s, want %d", row.name, row.method, row.path, res.status, res.body, row.status)
		}
		if row.status == 401 && res.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", row.name)
		}
		if got := ts.st.Stats().Revision; got != rev {
			t.Fatalf("%s changed the revision to %d", row.name, got)
		}
	}
	// The token may come as ?auth= (EventSource cannot send headers), and
	// perm may be a comma-separated string.
	q := signed(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"room": "r1", "perm": "read,write", "exp": time.Now().Add(time.Hour).Unix()})
	ts.mustDo(200, "PUT", "/rooms/r1/offer?auth="+q, `"o2"`)
	ts.mustDo(200, "GET", "/rooms/r1/offer.json?auth="+q, "")
	ts.mustDo(200, "GET", "/rooms/r1/offer.json?access_token="+q, "") // where some Firebase clients put it
	ts.mustDo(401, "GET", "/rooms/r1/offer.json?access_token=x", "")
	ts.mustDo(204, "OPTIONS", "/rooms/r1", "", "Origin", "https://x", "Access-Control-Request-Method", "PUT")
}

func TestAuthOnOtherRoutes(t *testing.T) {
	parallel(t)
	ts, a := newAuthServer(t, Config{}, store.Options{})
	ts.mustDo(200, "GET", "/healthz", "")
	ts.mustDo(200, "GET", "/readyz", "")
	ts.mustDo(401, "GET", "/ice-servers", "")
	ts.mustDo(200, "GET", "/ice-servers", "", "Authorization", "Bearer "+mint(t, a, "r1", time.Hour, PermRead))
	ts.mustDo(401, "GET", "/metrics", "")
	ts.mustDo(403, "GET", "/metrics", "", "Authorization", "Bearer "+mint(t, a, "r1", time.Hour, PermRead))
	ts.mustDo(200, "GET", "/metrics", "", "Authorization", "Bearer "+mint(t, a, "*", time.Hour, PermRead))
}

// A stream's token ends it: auth_revoked at expiry, then the stream closes.
func TestStreamAuthRevoked(t *testing.T) {
	parallel(t)
	ts, a := newAuthServer(t, Config{}, store.Options{})
	if res := ts.do("GET", "/rooms/r1", "", "Accept", "text/event-stream"); res.status != 401 {
		t.Fatalf("stream without a token: %d", res.status)
	}
	c := ts.watch("/rooms/r1?auth=" + mint(t, a, "r1", 1500*time.Millisecond, PermRead))
	c.expect("put", "/", "null")
	f := c.next()
	if f.event != "auth_revoked" || f.data != `"token expired"` {
		t.Fatalf("got %+v, want auth_revoked", f)
	}
	if _, err := c.read(5 * time.Second); err == nil {
		t.Fatal("the stream stayed open after auth_revoked")
	}
}

// Tokens reach neither the logs nor the metrics.
func TestTokensStayOutOfLogs(t *testing.T) {
	parallel(t)
	var logs bytes.Buffer
	ts, a := newAuthServer(t, Config{Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))}, store.Options{})
	tok := mint(t, a, "*", time.Hour, PermRead, PermWrite)
	ts.mustDo(200, "PUT", "/rooms/r1/k?auth="+tok, "1")
	ts.mustDo(400, "PUT", "/rooms/r1/k?auth="+tok, "{")
	ts.mustDo(200, "GET", "/rooms/r1", "", "Authorization", "Bearer "+tok)
	metrics := ts.mustDo(200, "GET", "/metrics?auth="+tok, "").body
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	if out := logs.String(); !strings.Contains(out, "/rooms/r1/k") || strings.Contains(out, sig) || strings.Contains(out, "auth=") {
		t.Fatalf("logs (want requests without the token):\n%s", out)
	}
	if strings.Contains(metrics, sig) {
		t.Fatal("a token reached the metrics")
	}
}

func TestMintRefusesNonsense(t *testing.T) {
	t.Parallel()
	if _, err := NewAuth([]byte("short")); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
	a, _ := NewAuth([]byte(testSecret))
	if _, err := a.Mint("r", []string{"admin"}, time.Hour); err == nil {
		t.Error("an unknown permission was minted")
	}
	if _, err := a.Mint("r", []string{PermRead}, 0); err == nil {
		t.Error("a token without lifetime was minted")
	}
}

func TestRateLimitPerIP(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{Rate: RateLimit{Rate: 1, Burst: 3, Loopback: true}}, store.Options{})
	for i := 0; i < 3; i++ {
		ts.mustDo(200, "GET", "/rooms/r", "")
	}
	res := ts.mustDo(429, "GET", "/rooms/r", "")
	if res.header.Get("Retry-After") == "" || !strings.Contains(res.body, "rate limit") {
		t.Fatalf("429: %v %s", res.header, res.body)
	}
	ts.mustDo(200, "GET", "/healthz", "") // health checks are never limited
}

// By default loopback clients are not limited: a test suite run against a
// local server must not meet 429s. A client through a trusted proxy is
// limited by its own address, loopback proxy or not.
func TestRateLimitExemptsLoopback(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{Rate: RateLimit{Rate: 1, Burst: 3}}, store.Options{})
	for i := 0; i < 20; i++ {
		ts.mustDo(200, "GET", "/rooms/r", "")
	}
	px := newTestServer(t, Config{Rate: RateLimit{Rate: 1, Burst: 3}, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, store.Options{})
	for i := 0; i < 3; i++ {
		px.mustDo(200, "GET", "/rooms/r", "", "X-Forwarded-For", "203.0.113.7")
	}
	px.mustDo(429, "GET", "/rooms/r", "", "X-Forwarded-For", "203.0.113.7")
	px.mustDo(200, "GET", "/rooms/r", "", "X-Forwarded-For", "127.0.0.5")
}

func FuzzToken(f *testing.F) {
	a, _ := NewAuth([]byte(testSecret))
	good, _ := a.Mint("r1", []string{PermRead}, time.Hour)
	f.Add(good)                                    // a valid token
	f.Add(good[:len(good)-2])                      // a truncated signature
	f.Add("eyJhbGciOiJub25lIn0.eyJyb29tIjoiKiJ9.") // alg none
	f.Add(strings.Repeat("a.", 3000))              // long nonsense
	f.Add("eyJhbGciOiJIUzI1NiJ9.bnVsbA.c2ln")      // claims null
	f.Fuzz(func(t *testing.T, tok string) {
		r := httptestRequest("/rooms/r1?auth=x")
		r.Header.Set("Authorization", "Bearer "+tok)
		g, err := a.check(r, "r1", PermRead)
		if err == nil && (g.room != "r1" && g.room != anyRoom || g.expires.IsZero()) {
			t.Fatalf("accepted %q as %+v", tok, g)
		}
	})
}
