package main

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

func TestLoopbackURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string // want "" means refused
	}{
		{"http://127.0.0.1:8080", "127.0.0.1:8080"},
		{"http://127.1.2.3", "127.1.2.3:80"},
		{"http://localhost:9000/", "127.0.0.1:9000"},
		{"http://LOCALHOST:9000", "127.0.0.1:9000"},
		{"http://[::1]:8080", "[::1]:8080"},
		{"http://[::ffff:127.0.0.1]:8080", "127.0.0.1:8080"},
		{"http://10.0.0.1:8080", ""},
		{"http://192.168.1.10:80", ""},
		{"http://172.16.0.1:80", ""},
		{"http://8.8.8.8:80", ""},
		{"http://0.0.0.0:8080", ""},
		{"http://[::]:8080", ""},
		{"http://[::2]:8080", ""},
		{"http://[::ffff:10.0.0.1]:8080", ""},
		{"http://[fe80::1%25lo]:8080", ""},
		{"http://example.com:8080", ""},
		{"http://127.0.0.1.nip.io:8080", ""},
		{"https://127.0.0.1:8443", ""},
		{"http://user:pw@127.0.0.1:8080", ""},
		{"http://127.0.0.1:8080/rooms", ""},
		{"http://127.0.0.1:0", ""},
		{"127.0.0.1:8080", ""},
	} {
		u, ap, err := loopbackURL(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("loopbackURL(%q) = %v, want a refusal", tc.in, u)
		case tc.want != "" && err != nil:
			t.Errorf("loopbackURL(%q): %v, want %s", tc.in, err, tc.want)
		case tc.want != "" && (ap.String() != tc.want || u.Host != tc.want):
			t.Errorf("loopbackURL(%q) = %s (%s), want %s", tc.in, u.Host, ap, tc.want)
		}
	}
}

func TestCheckDialAddr(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"127.0.0.1:80": true, "127.255.0.9:1": true, "[::1]:80": true,
		"10.0.0.1:80": false, "[::2]:80": false, "example.com:80": false, "localhost:80": false,
	} {
		if err := checkDialAddr(addr); (err == nil) != ok {
			t.Errorf("checkDialAddr(%q) = %v, want allowed %v", addr, err, ok)
		}
	}
}

func TestSourceAddrs(t *testing.T) {
	t.Parallel()
	got := sourceAddrs(300)
	if len(got) != 300 {
		t.Fatalf("got %d addresses, want 300", len(got))
	}
	if got[0].String() != "127.0.0.2:0" || got[252].String() != "127.0.0.254:0" || got[253].String() != "127.0.1.1:0" {
		t.Errorf("got %s, %s, %s; want 127.0.0.2, 127.0.0.254, 127.0.1.1", got[0], got[252], got[253])
	}
	seen := map[string]bool{}
	for _, a := range got {
		ip := a.IP.To4()
		if ip[0] != 127 || ip[3] == 0 || ip[3] == 255 || seen[a.String()] {
			t.Errorf("bad or repeated source %s", a)
		}
		seen[a.String()] = true
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2), 50, 1 * time.Millisecond},
		{ms(1, 2), 51, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.5, 100 * time.Millisecond},
		{ms(hundred...), 0.1, 1 * time.Millisecond},
	} {
		if got := percentile(tc.samples, tc.p); got != tc.want {
			t.Errorf("percentile(%d samples, %g) = %s, want %s", len(tc.samples), tc.p, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	got := summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond})
	want := latency{N: 4, Min: 1, Mean: 4, P50: 2, P90: 10, P99: 10, Max: 10}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if z := summarize(nil); z != (latency{}) {
		t.Errorf("summarize(nil) = %+v, want zero", z)
	}
}

func TestStreamNext(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 3000)
	wire := "retry: 1000\n\n" +
		"id: 41\nevent: put\ndata: {\"path\":\"/\",\"data\":null}\n\n" +
		": a comment\n" +
		"id: 42\r\nevent: patch\r\ndata: line1\r\ndata: line2\r\n\r\n" +
		"event: keep-alive\ndata: null\n\n" +
		"data:" + long + "\n\n" +
		"id: 43\nevent: cancel\ndata: \"bye\"\n\n"
	s := &stream{r: bufio.NewReaderSize(strings.NewReader(wire), 64)}
	for i, want := range []event{
		{id: 41, hasID: true, name: "put", data: []byte(`{"path":"/","data":null}`)},
		{id: 42, hasID: true, name: "patch", data: []byte("line1\nline2")},
		{name: "keep-alive", data: []byte("null")},
		{name: "message", data: []byte(long)},
		{id: 43, hasID: true, name: "cancel", data: []byte(`"bye"`)},
	} {
		got, err := s.next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got.id != want.id || got.hasID != want.hasID || got.name != want.name || string(got.data) != string(want.data) {
			t.Errorf("event %d = {%d %v %q %.40q}, want {%d %v %q %.40q}", i, got.id, got.hasID, got.name, got.data, want.id, want.hasID, want.name, want.data)
		}
	}
	if _, err := s.next(); err == nil {
		t.Error("after the last event: err = nil, want EOF")
	}
}

func TestSplitChangeAndIntField(t *testing.T) {
	t.Parallel()
	path, value, ok := splitChange([]byte(`{"path":"/msg","data":{"pad":"xx","seq":12,"t":-5}}`))
	if !ok || path != "/msg" || string(value) != `{"pad":"xx","seq":12,"t":-5}` {
		t.Fatalf("splitChange = %q, %q, %v", path, value, ok)
	}
	if v, ok := intField(value, `"seq":`); !ok || v != 12 {
		t.Errorf(`intField seq = %d, %v; want 12`, v, ok)
	}
	if v, ok := intField(value, `"t":`); !ok || v != -5 {
		t.Errorf(`intField t = %d, %v; want -5`, v, ok)
	}
	if _, ok := intField(value, `"nope":`); ok {
		t.Error("intField of an absent field: ok, want not found")
	}
	if _, _, ok := splitChange([]byte(`null`)); ok {
		t.Error("splitChange(null): ok, want not a change")
	}
}

func TestRoomView(t *testing.T) {
	t.Parallel()
	var v roomView
	steps := []struct {
		patch bool
		data  string
	}{
		{false, `{"path":"/","data":{"offer":{"type":"offer"},"callerCandidates":{"a":{},"b":{}}}}`},
		{false, `{"path":"/callerCandidates/c","data":{"candidate":"x"}}`},
		{false, `{"path":"/callerCandidates/a","data":null}`},
		{true, `{"path":"/","data":{"answer":{"type":"answer"},"calleeCandidates/z":{}}}`},
	}
	for _, s := range steps {
		if err := v.apply(s.patch, []byte(s.data)); err != nil {
			t.Fatalf("apply %s: %v", s.data, err)
		}
	}
	if !v.has["offer"] || !v.has["answer"] || len(v.candidates["callerCandidates"]) != 2 || len(v.candidates["calleeCandidates"]) != 1 {
		t.Errorf("view = %+v, want offer, answer, caller candidates b and c, callee candidate z", v)
	}
	if err := v.apply(false, []byte(`{"path":"/","data":null}`)); err != nil || v.has["offer"] || len(v.candidates) != 0 {
		t.Errorf("after the room's deletion: view = %+v, err %v; want empty", v, err)
	}
}
