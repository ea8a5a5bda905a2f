package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
)

func TestWritesAndReadsFollowTheContract(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})

	res := ts.mustDo(200, "PUT", "/rooms/r1/offer.json", `{"type":"offer","sdp":"v=0\r\n"}`)
	jsonEqual(t, res.body, `{"type":"offer","sdp":"v=0\r\n"}`)
	if got := res.header.Get("ETag"); got != ts.etag(1) {
		t.Fatalf("PUT ETag = %s, want %s", got, ts.etag(1))
	}
	if got := res.header.Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type = %q", got)
	}

	res = ts.mustDo(200, "POST", "/rooms/r1/callerCandidates", `{"candidate":"c1"}`)
	var name string
	if _, err := fmt.Sscanf(res.body, `{"name":%q}`, &name); err != nil || len(name) != 20 {
		t.Fatalf("POST body %s: want {\"name\":<20-char push id>}", res.body)
	}
	if got := res.header.Get("ETag"); got != ts.etag(2) {
		t.Fatalf("POST ETag = %s, want %s (the key's)", got, ts.etag(2))
	}

	res = ts.mustDo(200, "PATCH", "/rooms/r1", `{"answer":{"type":"answer"},"calleeCandidates/x1":{"candidate":"c2"}}`)
	jsonEqual(t, res.body, `{"answer":{"type":"answer"},"calleeCandidates/x1":{"candidate":"c2"}}`)

	res = ts.mustDo(200, "GET", "/rooms/r1", "")
	jsonEqual(t, res.body, `{"offer":{"type":"offer","sdp":"v=0\r\n"},"callerCandidates":{"`+name+`":{"candidate":"c1"}},
		"answer":{"type":"answer"},"calleeCandidates":{"x1":{"candidate":"c2"}}}`)
	if got := res.header.Get("ETag"); got != ts.etag(3) {
		t.Fatalf("room ETag = %s, want %s", got, ts.etag(3))
	}
	if got := ts.mustDo(200, "GET", "/rooms/r1/offer", "").header.Get("ETag"); got != ts.etag(1) {
		t.Fatalf("offer ETag = %s, want %s: the last change at or below it", got, ts.etag(1))
	}
	res = ts.mustDo(200, "GET", "/rooms/r1/calleeCandidates/x1.json", "")
	jsonEqual(t, res.body, `{"candidate":"c2"}`)

	res = ts.mustDo(200, "GET", "/rooms/r1/offer?print=pretty", "")
	if !strings.Contains(res.body, "\n  \"sdp\": ") {
		t.Fatalf("print=pretty body %q is not indented", res.body)
	}
	res = ts.mustDo(204, "PUT", "/rooms/r1/note?print=silent", `"hi"`)
	if res.body != "" || res.header.Get("ETag") != ts.etag(4) {
		t.Fatalf("print=silent: body %q ETag %s, want empty and %s", res.body, res.header.Get("ETag"), ts.etag(4))
	}

	res = ts.mustDo(200, "DELETE", "/rooms/r1/offer", "")
	if res.body != "null" || res.header.Get("ETag") != `"null_etag"` {
		t.Fatalf("DELETE: body %q ETag %s, want null and \"null_etag\"", res.body, res.header.Get("ETag"))
	}
	res = ts.mustDo(200, "GET", "/rooms/r1/offer", "")
	if res.body != "null" || res.header.Get("ETag") != `"null_etag"` {
		t.Fatalf("GET deleted: body %q ETag %s", res.body, res.header.Get("ETag"))
	}
	ts.mustDo(200, "PUT", "/rooms/r1/answer", `{}`) // an empty object deletes
	ts.mustDo(200, "DELETE", "/rooms/r1", "")
	if res := ts.mustDo(200, "GET", "/rooms/r1", ""); res.body != "null" {
		t.Fatalf("deleted room reads %s", res.body)
	}
	ts.mustDo(200, "PUT", "/rooms/r2", "null") // a room takes null too
}

func TestConditionalWrites(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r/offer", `"o1"`, "If-Match", "null_etag")
	res := ts.mustDo(412, "PUT", "/rooms/r/offer", `"o2"`, "If-Match", `"null_etag"`)
	if res.body != `"o1"` || res.header.Get("ETag") != ts.etag(1) {
		t.Fatalf("412: body %s ETag %s, want the current value and its ETag", res.body, res.header.Get("ETag"))
	}
	ts.mustDo(200, "PUT", "/rooms/r/offer", `"o2"`, "If-Match", ts.etag(1))
	ts.mustDo(200, "PUT", "/rooms/r/offer", `"o3"`, "If-Match", ts.id(2))  // quotes optional
	ts.mustDo(412, "PATCH", "/rooms/r", `{"x":1}`, "If-Match", ts.etag(2)) // the room moved to 3
	ts.mustDo(412, "POST", "/rooms/r/c", `1`, "If-Match", ts.etag(7))
	res = ts.mustDo(412, "DELETE", "/rooms/r/nothing", "", "If-Match", ts.etag(3))
	if res.body != "null" || res.header.Get("ETag") != `"null_etag"` {
		t.Fatalf("412 on an absent location: body %s ETag %s", res.body, res.header.Get("ETag"))
	}
	ts.mustDo(200, "DELETE", "/rooms/r", "", "If-Match", ts.etag(3))
}

// Every 4xx leaves the stored data and the revision exactly as they were.
func TestErrorsChangeNothing(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{Limits: store.Limits{MaxValueBytes: 1024, MaxKeys: 2, MaxChildren: 2, MaxRoomBytes: 3000}})
	ts.mustDo(200, "PUT", "/rooms/r1", `{"offer":"o","cands":{"a":1,"b":2}}`)
	before := ts.mustDo(200, "GET", "/rooms/r1", "").body
	rev := ts.st.Stats().Revision
	long := strings.Repeat("x", 65)
	rows := []struct {
		method, path, body string
		headers            []string
		status             int
		msg                string
	}{
		{"PUT", "/rooms/bad.name/k", `1`, nil, 400, "room name"},
		{"PUT", "/rooms/" + strings.Repeat("r", 129), `{}`, nil, 400, "room name"},
		{"PUT", "/rooms/r1/" + long, `1`, nil, 400, "key name"},
		{"PUT", "/rooms/r1/k/" + long, `1`, nil, 400, "child name"},
		{"PUT", "/rooms/r1/a%2Fb", `1`, nil, 400, "key name"},
		{"PUT", "/rooms/r1/k/c/d", `1`, nil, 400, "three levels"},
		{"GET", "/rooms/r1/k/c/d/e", ``, nil, 400, "three levels"},
		{"PUT", "/rooms/r1/k", `{"a":`, nil, 400, "invalid value"},
		{"PUT", "/rooms/r1/k", ``, nil, 400, "invalid value"},
		{"PUT", "/rooms/r1/k", `1 2`, nil, 400, "invalid value"},
		{"PUT", "/rooms/r1/k", "\"\xff\"", nil, 400, "UTF-8"},
		{"PUT", "/rooms/r1", `[1]`, nil, 400, "object or null"},
		{"PUT", "/rooms/r1/k", `{"bad name":1}`, nil, 400, "child name"},
		{"PUT", "/rooms/r1", `{"k":{"x.y":1}}`, nil, 400, "child name"},
		{"PATCH", "/rooms/r1", `"x"`, nil, 400, "must be an object"},
		{"PATCH", "/rooms/r1", `{"a/b/c":1}`, nil, 400, "PATCH member"},
		{"PATCH", "/rooms/r1", `{"a":1,"a/b":2}`, nil, 400, "overlap"},
		{"PATCH", "/rooms/r1/k", `{"a/b":1}`, nil, 400, "PATCH member"},
		{"GET", "/rooms", ``, nil, 403, "not listed"},
		{"PUT", "/rooms/", `{}`, nil, 403, "not listed"},
		{"DELETE", "/rooms.json", ``, nil, 403, "not listed"},
		{"GET", "/nowhere", ``, nil, 404, "Not Found"},
		{"POST", "/rooms/r1", `1`, nil, 405, "Method Not Allowed"},
		{"PATCH", "/rooms/r1/k/c", `{}`, nil, 405, "Method Not Allowed"},
		{"PUT", "/rooms/r1/offer", `"p"`, []string{"If-Match", ts.etag(9)}, 412, ""},
		{"PUT", "/rooms/r1/offer", `"p"`, []string{"If-Match", `W/"x"`}, 400, `want \"<revision>\"`},
		{"PUT", "/rooms/r1/offer", `"p"`, []string{"If-Match", ""}, 400, "If-Match: empty"},
		{"PUT", "/rooms/r1/offer//", `"p"`, nil, 400, "empty path segment"},
		{"PUT", "/rooms/r1//offer", `"p"`, nil, 400, "empty path segment"},
		{"DELETE", "/rooms/r1/cands//", ``, nil, 400, "empty path segment"},
		{"GET", "/rooms//r1", ``, nil, 400, "empty path segment"},
		{"PUT", "/rooms/r1/k", `"` + strings.Repeat("x", 2000) + `"`, nil, 413, "1024"},
		{"PUT", "/rooms/r1/k1", `1`, nil, 429, "keys"},
		{"POST", "/rooms/r1/cands", `3`, nil, 429, "children"},
	}
	for _, row := range rows {
		res := ts.do(row.method, row.path, row.body, row.headers...)
		if res.status != row.status {
			t.Errorf("%s %s %.40s: got %d %s, want %d", row.method, row.path, row.body, res.status, res.body, row.status)
			continue
		}
		if res.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s %s: error without Access-Control-Allow-Origin", row.method, row.path)
		}
		if row.status == 429 && res.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 429 without Retry-After", row.method, row.path)
		}
		if row.msg != "" && (!strings.HasPrefix(res.body, `{"error":"`) || !strings.Contains(res.body, row.msg)) {
			t.Errorf("%s %s: body %s, want {\"error\": ...%s...}", row.method, row.path, res.body, row.msg)
		}
		if got := ts.st.Stats().Revision; got != rev {
			t.Errorf("%s %s moved the revision from %d to %d", row.method, row.path, rev, got)
		}
		if got := ts.mustDo(200, "GET", "/rooms/r1", "").body; got != before {
			t.Errorf("%s %s changed the room: %s", row.method, row.path, got)
		}
	}
	big := `"` + strings.Repeat("y", 1000) + `"`
	ts.mustDo(200, "PUT", "/rooms/r1/offer", big)
	ts.mustDo(200, "PUT", "/rooms/r1/cands/a", big)
	rev, before = ts.st.Stats().Revision, ts.mustDo(200, "GET", "/rooms/r1", "").body
	res := ts.do("PUT", "/rooms/r1/cands/b", big)
	if res.status != 429 || !strings.Contains(res.body, "bytes") || res.header.Get("Retry-After") == "" {
		t.Fatalf("room over its byte quota: got %d %s, want 429 about bytes with Retry-After", res.status, res.body)
	}
	if ts.st.Stats().Revision != rev || ts.mustDo(200, "GET", "/rooms/r1", "").body != before {
		t.Fatal("a refused write changed the room")
	}
	ts.mustDo(200, "PUT", "/rooms/r1/cands/b", `2`) // shrinking is always allowed
}

// Under etcd a room's records are one etcd value, so a room that would
// outgrow etcd's request size limit (--max-request-bytes, 1.5 MiB by
// default) is refused like a room over its quota: 429, nothing changed.
func TestEtcdRoomOverRequestLimitAnswers429(t *testing.T) {
	if testEtcd == nil {
		t.Skip("the etcd backend's limit (SIGBASE_TEST_BACKEND=etcd)")
	}
	ts := newTestServer(t, Config{}, store.Options{Limits: store.Limits{MaxRoomBytes: 8 << 20}})
	value := `"` + strings.Repeat("x", 60000) + `"`
	var res response
	for i := 0; i < 40; i++ {
		if res = ts.do("PUT", fmt.Sprintf("/rooms/r/k%d", i), value); res.status != 200 {
			break
		}
	}
	if res.status != 429 || !strings.Contains(res.body, "request size limit") || res.header.Get("Retry-After") == "" {
		t.Fatalf("a room past etcd's request limit: got %d %s, want 429 with Retry-After", res.status, res.body)
	}
	rev, before := ts.st.Stats().Revision, ts.mustDo(200, "GET", "/rooms/r", "").body
	ts.mustDo(429, "PUT", "/rooms/r/more", value)
	if ts.st.Stats().Revision != rev || ts.mustDo(200, "GET", "/rooms/r", "").body != before {
		t.Fatal("a refused write changed the room")
	}
	ts.mustDo(200, "DELETE", "/rooms/r/k0", "") // shrinking still works
}

func TestShutdownAnswers503(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "GET", "/readyz", "")
	ts.shutdown()
	ts.st.Close()
	res := ts.do("PUT", "/rooms/r/k", `1`)
	if res.status != 503 || !strings.Contains(res.body, "closed") {
		t.Fatalf("write after close: %d %s, want 503", res.status, res.body)
	}
	if res := ts.do("GET", "/readyz", ""); res.status != 503 {
		t.Fatalf("/readyz while shutting down: %d, want 503", res.status)
	}
	ts.mustDo(200, "GET", "/healthz", "")
}

func TestCORS(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	res := ts.mustDo(204, "OPTIONS", "/rooms/r1/offer", "", "Origin", "https://app.example", "Access-Control-Request-Method", "PUT",
		"Access-Control-Request-Headers", "content-type,if-match")
	for h, want := range map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Methods": "PATCH",
		"Access-Control-Allow-Headers": "If-Match",
	} {
		if !strings.Contains(res.header.Get(h), want) {
			t.Errorf("preflight %s = %q, want it to contain %q", h, res.header.Get(h), want)
		}
	}
	for _, h := range []string{"Authorization", "Last-Event-ID", "Content-Type", "If-None-Match", "X-Firebase-ETag"} {
		if !strings.Contains(res.header.Get("Access-Control-Allow-Headers"), h) {
			t.Errorf("preflight does not allow %s", h)
		}
	}
	ts.mustDo(204, "OPTIONS", "/rooms", "", "Origin", "https://app.example", "Access-Control-Request-Method", "GET")
	res = ts.mustDo(200, "GET", "/rooms/r1", "", "Origin", "https://app.example")
	if res.header.Get("Access-Control-Expose-Headers") != "ETag" {
		t.Errorf("ETag is not exposed: %q", res.header.Get("Access-Control-Expose-Headers"))
	}

	ts = newTestServer(t, Config{CORSOrigins: []string{"https://good.example"}}, store.Options{})
	if got := ts.mustDo(200, "GET", "/rooms/r1", "", "Origin", "https://good.example").header.Get("Access-Control-Allow-Origin"); got != "https://good.example" {
		t.Errorf("allowed origin: ACAO %q", got)
	}
	if got := ts.mustDo(404, "GET", "/x", "", "Origin", "https://good.example").header.Get("Access-Control-Allow-Origin"); got != "https://good.example" {
		t.Errorf("allowed origin on a 404: ACAO %q", got)
	}
	if got := ts.mustDo(200, "GET", "/rooms/r1", "", "Origin", "https://evil.example").header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("origin outside the allow-list got ACAO %q", got)
	}
}

func TestHealthMetricsAndFiles(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "GET", "/healthz", "")
	ts.mustDo(200, "GET", "/readyz", "")
	ts.mustDo(200, "PUT", "/rooms/r/k", `1`)
	ts.mustDo(400, "PUT", "/rooms/r/k", `{`)
	body := ts.mustDo(200, "GET", "/metrics", "").body
	for _, want := range []string{
		`sigbase_writes_total{code="200",op="put"} 1`,
		`sigbase_writes_total{code="400",op="put"} 1`,
		"sigbase_write_duration_seconds_bucket", "sigbase_commit_group_size_bucket",
		"sigbase_watchers 0", "sigbase_rooms 1", "sigbase_revision " + ts.id(1), "sigbase_rooms_expired_total 0",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	ts.mustDo(404, "GET", "/client/sigbase.js", "") // no files configured
}

func TestICEServers(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{ICE: ICEConfig{
		STUN: []string{"stun:stun.example:3478"}, TURN: []string{"turn:turn.example:3478?transport=udp"},
		TURNSecret: "north", TURNTTL: time.Hour,
	}}, store.Options{})
	res := ts.mustDo(200, "GET", "/ice-servers", "")
	if !strings.Contains(res.body, `{"urls":["stun:stun.example:3478"]}`) || !strings.Contains(res.body, `"credential":"`) {
		t.Fatalf("/ice-servers: %s", res.body)
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("credentials may be cached: Cache-Control %q", res.header.Get("Cache-Control"))
	}
	none := newTestServer(t, Config{}, store.Options{})
	jsonEqual(t, none.mustDo(200, "GET", "/ice-servers", "").body, `{"iceServers":[]}`)
}

// The vector was computed apart from Go:
// echo -n '1700000000:alice' | openssl dgst -sha1 -hmac north -binary | base64
func TestTURNCredentialMatchesOpenSSL(t *testing.T) {
	t.Parallel()
	user, cred := turnCredential("north", time.Unix(1700000000, 0), "alice")
	if user != "1700000000:alice" || cred != "Cd/49soE35ICqcJF/bCTn8Z4OyE=" {
		t.Fatalf("got %s %s", user, cred)
	}
}

func TestIfMatchParsing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want store.Cond
		bad  bool
	}{
		{"", store.Cond{}, false},
		{`"12"`, store.Cond{Set: true, Rev: 12}, false},
		{`12`, store.Cond{Set: true, Rev: 12}, false},
		{` "12" `, store.Cond{Set: true, Rev: 12}, false},
		{`null_etag`, store.Cond{Set: true}, false},
		{`"null_etag"`, store.Cond{Set: true}, false},
		{`"0"`, store.Cond{}, true},
		{`*`, store.Cond{}, true},
		{`W/"12"`, store.Cond{}, true},
		{`"12", "13"`, store.Cond{}, true},
		{`-1`, store.Cond{}, true},
	} {
		got, err := ifMatch(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ifMatch(%q) = %+v, %v; want %+v, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestBodyLimitAnswers413BeforeReading(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{Limits: store.Limits{MaxValueBytes: 100}})
	req, _ := http.NewRequest("PUT", ts.srv.URL+"/rooms/r/k", strings.NewReader(`"`+strings.Repeat("x", 200)+`"`))
	res, err := ts.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Fatalf("got %d, want 413", res.StatusCode)
	}
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::ffff":   "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":     "::ffff:192.0.2.7",
		"not an address":       "not an address",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// net/http answers an oversized request line or header block itself, before
// any handler; JSONErrors gives that answer the JSON error shape too.
func TestOversizedHeadersAnswerJSON431(t *testing.T) {
	parallel(t)
	st, _ := openTestStore(t, store.Options{})
	srv := httptest.NewUnstartedServer(New(st, Config{}))
	srv.Config.MaxHeaderBytes = 16 << 10
	srv.Listener = JSONErrors(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	for name, req := range map[string]string{
		"header":       "GET /rooms/r1 HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 40<<10) + "\r\n\r\n",
		"request line": "GET /rooms/r1?q=" + strings.Repeat("a", 40<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
		"bad request":  "GET /rooms/r1 HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		go conn.Write([]byte(req)) // the server may answer before it has read it all
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(res.Body)
		conn.Close()
		want := 431
		if name == "bad request" {
			want = 400
		}
		if res.StatusCode != want || res.Header.Get("Content-Type") != contentTypeJSON || !strings.HasPrefix(string(body), `{"error":"`) {
			t.Errorf("%s: got %d %q %s, want %d with a JSON error", name, res.StatusCode, res.Header.Get("Content-Type"), body, want)
		}
	}
	// An ordinary answer on the wrapped listener is untouched.
	res, err := srv.Client().Get(srv.URL + "/rooms/r1")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET through JSONErrors: %v %v", res, err)
	}
	res.Body.Close()
}

// Firebase drops null at every depth and objects that become empty vanish.
func TestNullsVanishAtEveryDepth(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	jsonEqual(t, ts.mustDo(200, "PUT", "/rooms/r/k/c", `{"a":1,"n":null}`).body, `{"a":1}`)
	jsonEqual(t, ts.mustDo(200, "PUT", "/rooms/r/k/d", `{"a":{"n":null,"b":1}}`).body, `{"a":{"b":1}}`)
	jsonEqual(t, ts.mustDo(200, "PUT", "/rooms/r/k/e", `{"a":{"n":null}}`).body, `null`)
	jsonEqual(t, ts.mustDo(200, "PATCH", "/rooms/r/k", `{"f":{"x":{"y":null},"z":2}}`).body, `{"f":{"z":2}}`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r", "").body, `{"k":{"c":{"a":1},"d":{"a":{"b":1}},"f":{"z":2}}}`)
}

// Arrays are stored as Firebase stores them, objects keyed "0", "1", …:
// their elements are addressable, a read gives an array while the keys are
// mostly sequential, and what watchers are sent agrees with what is stored.
func TestArraysAreAddressable(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r/arr", `[1,2,3]`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/arr/1", "").body, `2`)
	w := ts.watch("/rooms/r/arr")
	w.expect("put", "/", `[1,2,3]`)
	child := ts.watch("/rooms/r/arr/0")
	child.expect("put", "/", `1`)

	ts.mustDo(200, "PUT", "/rooms/r/arr", `["a","b"]`)
	w.expect("put", "/", `["a","b"]`)
	child.expect("put", "/", `"a"`)
	jsonEqual(t, ts.mustDo(200, "PUT", "/rooms/r/arr/0", `"z"`).body, `"z"`)
	w.expect("put", "/0", `"z"`)
	child.expect("put", "/", `"z"`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/arr", "").body, `["z","b"]`)

	jsonEqual(t, ts.mustDo(200, "PATCH", "/rooms/r/arr", `{"3":"d"}`).body, `{"3":"d"}`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/arr", "").body, `["z","b",null,"d"]`)
	ts.mustDo(200, "DELETE", "/rooms/r/arr/0", "")
	ts.mustDo(200, "DELETE", "/rooms/r/arr/1", "")
	// Only index 3 is left: too sparse to read as an array.
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/arr", "").body, `{"3":"d"}`)
	// Nested arrays follow the same rule, and null elements are holes.
	jsonEqual(t, ts.mustDo(200, "PUT", "/rooms/r/k/c", `{"l":[null,null,"c"],"m":["a",null,"c"],"o":{"0":"x","1":"y"}}`).body,
		`{"l":{"2":"c"},"m":["a",null,"c"],"o":["x","y"]}`)
}

// Server values resolve at commit, in PUT, PATCH and POST, at any depth;
// watchers get the resolved numbers. Other '.'-names are refused.
func TestServerValues(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	w := ts.watch("/rooms/r/n")
	w.expect("put", "/", `null`)
	before := time.Now().UnixMilli()
	res := ts.mustDo(200, "PUT", "/rooms/r/t", `{".sv":"timestamp"}`)
	var ms int64
	if err := json.Unmarshal([]byte(res.body), &ms); err != nil || ms < before || ms > time.Now().UnixMilli() {
		t.Fatalf("PUT timestamp answered %s, want a time in ms between %d and now", res.body, before)
	}
	for i, want := range []string{`1`, `3`} {
		inc := []string{`{".sv":{"increment":1}}`, `{".sv":{"increment":2}}`}[i]
		jsonEqual(t, ts.mustDo(200, "PUT", "/rooms/r/n", inc).body, want)
		w.expect("put", "/", want)
	}
	jsonEqual(t, ts.mustDo(200, "PUT", "/rooms/r/n", `{".sv":{"increment":0.5}}`).body, `3.5`)
	// Nested, in a PATCH and a POST, and over a string (which counts as 0).
	ts.mustDo(200, "PUT", "/rooms/r/k/s", `"text"`)
	jsonEqual(t, ts.mustDo(200, "PATCH", "/rooms/r/k", `{"s":{".sv":{"increment":5}},"c":{"deep":{"count":{".sv":{"increment":-2}}}}}`).body,
		`{"c":{"deep":{"count":-2}},"s":5}`)
	jsonEqual(t, ts.mustDo(200, "PATCH", "/rooms/r", `{"k/c":{"deep":{"count":{".sv":{"increment":3}}}}}`).body, `{"k/c":{"deep":{"count":1}}}`)
	name := ts.mustDo(200, "POST", "/rooms/r/members", `{"joinedAt":{".sv":"timestamp"}}`).body
	var pushed struct{ Name string }
	_ = json.Unmarshal([]byte(name), &pushed)
	got := ts.mustDo(200, "GET", "/rooms/r/members/"+pushed.Name, "").body
	if !strings.HasPrefix(got, `{"joinedAt":1`) {
		t.Fatalf("pushed member = %s, want a resolved joinedAt", got)
	}
	rev := ts.st.Stats().Revision
	for _, bad := range []string{`{".sv":"now"}`, `{".sv":"timestamp","x":1}`, `{".sv":{"increment":"1"}}`, `{".priority":1}`, `{"a":{".value":1}}`, `[{".x":1}]`} {
		res := ts.mustDo(400, "PUT", "/rooms/r/k/bad", bad)
		if !strings.Contains(res.body, ".") {
			t.Errorf("PUT %s: %s, want a message about the '.' name", bad, res.body)
		}
	}
	if ts.st.Stats().Revision != rev {
		t.Fatal("a refused server value changed the store")
	}
}

// A failed commit group is counted apart, not as a commit.
func TestObserveCommitCountsFailures(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.ObserveCommit(3, time.Millisecond, nil)
	m.ObserveCommit(2, time.Millisecond, fmt.Errorf("disk full"))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"sigbase_commit_failures_total 1", "sigbase_commit_group_size_count 1", "sigbase_commit_duration_seconds_count 1"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
