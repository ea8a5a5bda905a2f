package api

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sigbase/sigbase/store"
)

func TestConditionalGet(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	res := ts.mustDo(304, "GET", "/rooms/r/k", "", "If-None-Match", `"null_etag"`)
	if res.body != "" || res.header.Get("ETag") != `"null_etag"` {
		t.Fatalf("304 for nothing stored: body %q, ETag %q", res.body, res.header.Get("ETag"))
	}
	tag := ts.mustDo(200, "PUT", "/rooms/r/k", `"v"`).header.Get("ETag")
	ts.mustDo(304, "GET", "/rooms/r/k", "", "If-None-Match", tag)
	ts.mustDo(304, "GET", "/rooms/r/k", "", "If-None-Match", strings.Trim(tag, `"`)) // quotes optional
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/k", "", "If-None-Match", `"null_etag"`).body, `"v"`)
	ts.mustDo(200, "PUT", "/rooms/r/k", `"w"`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/k", "", "If-None-Match", tag).body, `"w"`)
	for _, bad := range []string{"", "*", `W/"3"`, `"1", "2"`} {
		ts.mustDo(400, "GET", "/rooms/r/k", "", "If-None-Match", bad)
	}
	ts.mustDo(400, "PUT", "/rooms/r/k", `1`, "If-None-Match", tag)
}

func TestShallow(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r", `{"a":{"x":{"deep":1},"y":2},"b":"s","arr":[5,6]}`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r?shallow=true", "").body, `{"a":true,"arr":true,"b":true}`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/a?shallow=true", "").body, `{"x":true,"y":true}`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/b?shallow=true", "").body, `"s"`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/none?shallow=true", "").body, `null`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/a?shallow=false", "").body, `{"x":{"deep":1},"y":2}`)
	ts.mustDo(400, "GET", "/rooms/r/a?shallow=yes", "")
	ts.mustDo(400, "GET", "/rooms/r/a?shallow=true&orderBy=%22$key%22", "")
}

// The parameters of docs/API.md's table: supported ones work, ignored ones
// are checked for form, refused and unknown ones are 400 naming them.
func TestQueryParameters(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r/k?ns=x&format=export&timeout=10s&writeSizeLimit=tiny", `1`)
	ts.mustDo(200, "GET", "/rooms/r/k?ns=x&format=export&timeout=2min&print=silent", "")
	for _, row := range []struct{ query, msg string }{
		{"callback=f", `"callback"`},
		{"download=x", `"download"`},
		{"auth_variable_override=%7B%7D", `"auth_variable_override"`},
		{"orderBy2=x", `"orderBy2"`},
		{"startAfter=1&orderBy=%22$key%22", `"startAfter"`},
		{"print=ugly", "print"},
		{"format=json", "format"},
		{"timeout=20min", "timeout"},
		{"timeout=0s", "timeout"},
		{"writeSizeLimit=huge", "writeSizeLimit"},
		{"ns=a&ns=b", `"ns"`},
		{"last_event_id=3", `"last_event_id"`},
	} {
		res := ts.do("GET", "/rooms/r/k?"+row.query, "")
		if res.status != 400 || !strings.Contains(strings.ReplaceAll(res.body, `\"`, `"`), row.msg) {
			t.Errorf("GET ?%s: %d %s, want 400 naming %s", row.query, res.status, res.body, row.msg)
		}
	}
	for _, q := range []string{"orderBy=%22$key%22", "shallow=true", "limitToFirst=1&orderBy=%22$key%22"} {
		ts.mustDo(400, "PUT", "/rooms/r/k?"+q, `2`)
	}
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/k", "").body, `1`)
}

func q(params ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		v.Set(params[i], params[i+1])
	}
	return "?" + v.Encode()
}

func TestQueries(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r/d", `{"b":{"h":3,"n":"bo"},"a":{"h":1,"n":"al"},"c":{"h":2},"10":{"h":true},"9":{"h":"x"},"z":{"n":"zz"}}`)
	for _, row := range []struct{ query, want string }{
		{q("orderBy", `"$key"`, "limitToFirst", "2"), `{"9":{"h":"x"},"10":{"h":true}}`}, // integer keys first, numerically
		{q("orderBy", `"$key"`, "startAt", `"b"`), `{"b":{"h":3,"n":"bo"},"c":{"h":2},"z":{"n":"zz"}}`},
		{q("orderBy", `"$key"`, "startAt", `"b"`, "endAt", `"c"`), `{"b":{"h":3,"n":"bo"},"c":{"h":2}}`},
		{q("orderBy", `"h"`, "limitToFirst", "3"), `{"z":{"n":"zz"},"10":{"h":true},"a":{"h":1,"n":"al"}}`}, // missing < true < numbers
		{q("orderBy", `"h"`, "startAt", "2", "endAt", "3"), `{"c":{"h":2},"b":{"h":3,"n":"bo"}}`},
		{q("orderBy", `"h"`, "equalTo", "2"), `{"c":{"h":2}}`},
		{q("orderBy", `"h"`, "limitToLast", "1"), `{"9":{"h":"x"}}`}, // strings after numbers
		{q("orderBy", `"n"`, "equalTo", `"al"`), `{"a":{"h":1,"n":"al"}}`},
		{q("orderBy", `"h"`, "equalTo", "42"), `null`},
	} {
		got := ts.mustDo(200, "GET", "/rooms/r/d"+row.query, "").body
		jsonEqual(t, got, row.want)
	}
	ts.mustDo(200, "PUT", "/rooms/r/v", `{"p":3,"q":1,"s":"x","t":false}`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/v"+q("orderBy", `"$value"`, "limitToFirst", "2"), "").body, `{"t":false,"q":1}`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/v"+q("orderBy", `"$value"`, "startAt", "2"), "").body, `{"p":3,"s":"x"}`)
	// An array key: its children are its indices.
	ts.mustDo(200, "PUT", "/rooms/r/arr", `["c","a","b"]`)
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/arr"+q("orderBy", `"$value"`, "limitToFirst", "2"), "").body, `[null,"a","b"]`) // indices 1 and 2 read as an array
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/arr"+q("orderBy", `"$key"`, "limitToFirst", "2"), "").body, `["c","a"]`)
	for _, bad := range []string{
		q("limitToFirst", "1"),                              // no orderBy
		q("orderBy", "$key"),                                // not JSON
		q("orderBy", `"$key"`, "startAt", "1"),              // $key bounds are strings
		q("orderBy", `"h"`, "equalTo", "1", "startAt", "0"), // equalTo with a bound
		q("orderBy", `"h"`, "limitToFirst", "1", "limitToLast", "1"),
		q("orderBy", `"h"`, "limitToFirst", "0"),
		q("orderBy", `"h"`, "limitToFirst", "x"),
		q("orderBy", `"$priority"`),
		q("orderBy", `"h"`, "startAt", `{"a":1}`),
	} {
		ts.mustDo(400, "GET", "/rooms/r/d"+bad, "")
	}
	ts.mustDo(400, "GET", "/rooms/r"+q("orderBy", `"$key"`), "")     // a room
	ts.mustDo(400, "GET", "/rooms/r/d/a"+q("orderBy", `"$key"`), "") // a child
}

// A filtered watch starts with the query's answer and then sends what
// enters, changes in or leaves it.
func TestFilteredWatch(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r/c", `{"a":1,"b":5,"c":3}`)
	w := ts.watch("/rooms/r/c"+q("orderBy", `"$value"`, "limitToFirst", "2"), "Last-Event-ID", "1")
	w.expect("put", "/", `{"a":1,"c":3}`)      // a snapshot even with Last-Event-ID
	ts.mustDo(200, "PUT", "/rooms/r/c/d", `2`) // enters, pushing c out
	w.expect("put", "/c", `null`)
	w.expect("put", "/d", `2`)
	ts.mustDo(200, "PUT", "/rooms/r/c/b", `6`) // outside the answer: nothing
	ts.mustDo(200, "PATCH", "/rooms/r/c", `{"a":0,"e":-1}`)
	w.expect("put", "/d", `null`)
	w.expect("put", "/a", `0`)
	w.expect("put", "/e", `-1`)
	ts.mustDo(200, "PUT", "/rooms/r/c", `{"x":9}`)
	w.expect("put", "/", `{"x":9}`)
	ts.mustDo(200, "DELETE", "/rooms/r", "")
	w.expect("put", "/", `null`)
	if res := ts.do("GET", "/rooms/r/c?shallow=true", "", "Accept", "text/event-stream"); res.status != 400 {
		t.Fatalf("shallow watch: %d %s, want 400", res.status, res.body)
	}
}
