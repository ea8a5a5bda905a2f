package api

import (
	"testing"

	"github.com/sigbase/sigbase/store"
)

// The encoder's frames, byte for byte: an id on every change and never an
// empty one, data split on line breaks, control events without ids.
func TestFrames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, got, want string
	}{
		{"opening", string(appendOpening(nil, 1000, 15000)), "retry: 1000\nevent: keep-alive\ndata: {\"interval\":15000}\n\n"},
		{"put", string(appendChange(nil, store.Event{Rev: 41, Path: "/", Data: []byte(`{"a":1}`)})),
			"id: 41\nevent: put\ndata: {\"path\":\"/\",\"data\":{\"a\":1}}\n\n"},
		{"patch at revision 0", string(appendChange(nil, store.Event{Rev: 0, Patch: true, Path: "/k", Data: []byte(`null`)})),
			"id: 0\nevent: patch\ndata: {\"path\":\"/k\",\"data\":null}\n\n"},
		{"line breaks", string(appendChange(nil, store.Event{Rev: 2, Path: "/", Data: []byte("[1,\n2,\r\n3,\r4]")})),
			"id: 2\nevent: put\ndata: {\"path\":\"/\",\"data\":[1,\ndata: 2,\ndata: 3,\ndata: 4]}\n\n"},
		{"keep-alive", string(appendControl(nil, "keep-alive", "")), "event: keep-alive\ndata: null\n\n"},
		{"cancel", string(appendControl(nil, "cancel", `too "slow"`)), "event: cancel\ndata: \"too \\\"slow\\\"\"\n\n"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
}
