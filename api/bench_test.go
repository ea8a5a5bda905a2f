package api

import (
	"bytes"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sigbase/sigbase/store"
)

// BenchmarkAppendChange encodes one SSE frame of a typical ICE candidate
// and of a 4 KiB SDP offer into a reused buffer, as a stream does.
func BenchmarkAppendChange(b *testing.B) {
	for _, tc := range []struct {
		name string
		ev   store.Event
	}{
		{"candidate", store.Event{Rev: 1234567, Path: "/callerCandidates/-OCx3kT1AAAAAAAAAAAA",
			Data: []byte(`{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}`)}},
		{"offer", store.Event{Rev: 1234567, Path: "/offer",
			Data: []byte(`{"sdp":"` + strings.Repeat(`v=0\r\n`, 800) + `","type":"offer"}`)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.ev.Data)))
			for b.Loop() {
				buf = appendChange(buf[:0], tc.ev)
			}
		})
	}
}

// BenchmarkPutHandler is one PUT of a 128-byte key through the whole HTTP
// handler (middleware, routing, parsing, the store's durable group commit)
// without the network: go test -run '^$' -bench PutHandler -benchmem ./api
func BenchmarkPutHandler(b *testing.B) {
	st, _ := openTestStore(b, store.Options{})
	h := New(st, Config{})
	body := []byte(`{"type":"offer","sdp":"` + strings.Repeat("v", 100) + `"}`)
	b.ReportAllocs()
	b.SetParallelism(16) // 32 writers on 2 cores: commits come in groups, as under load
	b.ResetTimer()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("PUT", "/rooms/r"+strconv.FormatInt(n.Add(1)%64, 10)+"/offer", bytes.NewReader(body))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("PUT: %d %s", rec.Code, rec.Body)
			}
		}
	})
}
