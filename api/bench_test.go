package api

import (
	"strings"
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
