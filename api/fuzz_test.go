package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sigbase/sigbase/store"
)

func FuzzIfMatch(f *testing.F) {
	f.Add(`"12"`)                   // quoted revision
	f.Add(`12`)                     // bare revision
	f.Add(`null_etag`)              // absent
	f.Add(`"null_etag"`)            // absent, quoted
	f.Add(`W/"1"`)                  // weak tag: refused
	f.Add(`"1", "2"`)               // a list: refused
	f.Add(`"18446744073709551616"`) // overflows uint64
	f.Fuzz(func(t *testing.T, h string) {
		cond, err := ifMatch(h)
		if err != nil {
			return
		}
		if !cond.Set {
			if strings.TrimSpace(h) != "" {
				t.Fatalf("%q parsed as no condition", h)
			}
			return
		}
		again, err := ifMatch(etag(cond.Rev))
		if err != nil || again != cond {
			t.Fatalf("%q -> %+v, its ETag %s -> %+v, %v", h, cond, etag(cond.Rev), again, err)
		}
	})
}

func FuzzLastEventID(f *testing.F) {
	f.Add("41", "")  // header
	f.Add("", "41")  // query parameter
	f.Add("x", "")   // malformed: snapshot
	f.Add(" 7 ", "") // spaces around
	f.Add("99999999999999999999", "")
	f.Fuzz(func(t *testing.T, header, query string) {
		r := httptest.NewRequest("GET", "/rooms/r", nil)
		r.Header.Set("Last-Event-ID", header)
		q := r.URL.Query()
		q.Set("last_event_id", query)
		r.URL.RawQuery = q.Encode()
		after, resume, malformed := lastEventID(r)
		if resume && malformed {
			t.Fatal("both resume and malformed")
		}
		if resume && etag(after) == "" {
			t.Fatal("unreachable")
		}
	})
}

// Any method, path and body: never a 5xx, never a panic, and every error is
// {"error": "..."} with CORS headers.
func FuzzRequests(f *testing.F) {
	st, _ := openTestStore(f, store.Options{})
	f.Cleanup(func() { st.Close() })
	h := New(st, Config{})
	f.Add("PUT", "/rooms/r1/offer.json", `{"type":"offer"}`)    // a normal write
	f.Add("PATCH", "/rooms/r1", `{"a/b":1,"c":null}`)           // multi-path patch
	f.Add("POST", "/rooms/r1/c", `{"candidate":"x"}`)           // push
	f.Add("GET", "/rooms/r1/a/b/c", ``)                         // too deep
	f.Add("PUT", "/rooms/%2e%2e/x", `1`)                        // traversal attempt
	f.Add("DELETE", "/rooms//x", ``)                            // empty segment
	f.Add("PUT", "/rooms/r1/k", "{\"a\":\"\xff\"}")             // invalid UTF-8
	f.Add("PATCH", "/rooms/r1/k", `{"x":{"y":[1,{"z":null}]}}`) // nested child value
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#?") || method == "" ||
			strings.ContainsAny(method, " \r\n\t()<>@,;:\\\"/[]?={}") {
			return
		}
		req, err := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s %q: no CORS header", method, path)
		}
		if rec.Code >= 400 && method != "HEAD" {
			var e struct{ Error string }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				if rec.Code != http.StatusPreconditionFailed {
					t.Fatalf("%s %q: %d with body %q, want {\"error\":...}", method, path, rec.Code, rec.Body)
				}
			}
		}
		if rec.Code == 200 && method != "GET" && !json.Valid(bytes.TrimSpace(rec.Body.Bytes())) {
			t.Fatalf("%s %q: 200 with invalid JSON %q", method, path, rec.Body)
		}
	})
}
