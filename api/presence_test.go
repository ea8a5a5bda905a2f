package api

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
)

func onDisconnect(session string, actions ...string) string {
	v := url.Values{"session": {session}}
	for _, a := range actions {
		v.Add("ondisconnect", a)
	}
	return "?" + v.Encode()
}

// waitValue polls a location until it reads want.
func (ts *testServer) waitValue(path, want string, limit time.Duration) {
	ts.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := ts.mustDo(200, "GET", path, "").body
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("%s = %s after %v, want %s", path, got, limit, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOnDisconnectAfterGrace(t *testing.T) {
	parallel(t)
	const grace = 300 * time.Millisecond
	ts := newTestServer(t, Config{DisconnectGrace: grace}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r/members/p1", `{"name":"Ann"}`)
	other := ts.watch("/rooms/r/members")
	other.expect("put", "/", `{"p1":{"name":"Ann"}}`)
	peer := ts.watch("/rooms/r/offer" + onDisconnect("p1",
		`{"op":"delete","path":"members/p1"}`,
		`{"op":"set","path":"seen/p1","value":{".sv":"timestamp"}}`))
	peer.expect("put", "/", "null")
	closed := time.Now()
	peer.res.Body.Close()
	other.expect("put", "/", "null") // the room PATCH that deletes members/p1, and sets seen/p1
	if d := time.Since(closed); d < grace {
		t.Fatalf("the member left %v after its stream closed, before the %v grace", d, grace)
	}
	if got := ts.mustDo(200, "GET", "/rooms/r/seen/p1", "").body; !strings.HasPrefix(got, "1") {
		t.Fatalf("seen/p1 = %s, want a server timestamp", got)
	}
}

// A stream of the same session back within the grace period cancels the
// actions: a network blip is no leave.
func TestOnDisconnectCancelledByResume(t *testing.T) {
	parallel(t)
	const grace = 500 * time.Millisecond
	ts := newTestServer(t, Config{DisconnectGrace: grace}, store.Options{})
	ts.mustDo(200, "PUT", "/rooms/r/members/p1", `true`)
	leave := onDisconnect("p1", `{"op":"delete","path":"members/p1"}`)
	first := ts.watch("/rooms/r" + leave)
	first.nextChange()
	first.res.Body.Close()
	again := ts.watch("/rooms/r"+leave, "Last-Event-ID", ts.id(1))
	time.Sleep(2 * grace) // the first stream's end is long past its grace
	jsonEqual(t, ts.mustDo(200, "GET", "/rooms/r/members/p1", "").body, `true`)
	again.res.Body.Close()
	ts.waitValue("/rooms/r/members/p1", "null", grace+5*time.Second)
}

func TestOnDisconnectRefusals(t *testing.T) {
	parallel(t)
	ts := newTestServer(t, Config{}, store.Options{})
	del := `{"op":"delete","path":"members/p1"}`
	for _, row := range []struct{ query, msg string }{
		{"?ondisconnect=" + url.QueryEscape(del), "session"},
		{onDisconnect("bad name", del), "session"},
		{onDisconnect("p1", del, del, del, del, del), "at most 4"},
		{onDisconnect("p1", `{"op":"set","path":"k","value":"`+strings.Repeat("x", 1100)+`"}`), "1024 bytes"},
		{onDisconnect("p1", `{"op":"drop","path":"k"}`), "op"},
		{onDisconnect("p1", `{"op":"delete","path":""}`), "path"},
		{onDisconnect("p1", `{"op":"delete","path":"a/b/c"}`), "path"},
		{onDisconnect("p1", `{"op":"delete","path":"k","value":1}`), "no value"},
		{onDisconnect("p1", `{"op":"set","path":"k"}`), "needs a value"},
		{onDisconnect("p1", `{"op":"set","path":"k","value":{".x":1}}`), "reserved"},
		{onDisconnect("p1", `not json`), "ondisconnect must be"},
		{onDisconnect("p1", `{"op":"delete","path":"members"}`, `{"op":"delete","path":"members/p1"}`), "overlap"},
	} {
		res := ts.do("GET", "/rooms/r"+row.query, "", "Accept", "text/event-stream")
		if res.status != 400 || !strings.Contains(res.body, row.msg) {
			t.Errorf("watch %s: %d %s, want 400 about %s", row.query, res.status, res.body, row.msg)
		}
	}
	// On a plain GET they are not parameters at all.
	ts.mustDo(400, "GET", "/rooms/r"+onDisconnect("p1", del), "")
}

// Registering a write for later needs the right to write now.
func TestOnDisconnectNeedsAWriteToken(t *testing.T) {
	parallel(t)
	ts, a := newAuthServer(t, Config{}, store.Options{})
	q := onDisconnect("p1", `{"op":"delete","path":"members/p1"}`)
	read := mint(t, a, "r", time.Hour, PermRead)
	res := ts.do("GET", "/rooms/r"+q+"&auth="+read, "", "Accept", "text/event-stream")
	if res.status != 403 || !strings.Contains(res.body, "ondisconnect needs a write token") {
		t.Fatalf("read-only token: %d %s, want 403", res.status, res.body)
	}
	ts.watch("/rooms/r" + q + "&auth=" + mint(t, a, "r", time.Hour, PermRead, PermWrite)).nextChange()
	// A session without actions is only a read.
	ts.watch("/rooms/r?session=p1&auth=" + read).nextChange()
}
