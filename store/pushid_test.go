package store

import (
	"github.com/sigbase/sigbase/store/internal/model"
	"strings"
	"testing"
	"time"
)

var (
	validPushID    = model.ValidPushID
	decodePushTime = model.PushTime
)

func TestPushIDGeneratorClock(t *testing.T) {
	t.Parallel()
	var g PushIDs
	base := time.UnixMilli(1_700_000_000_000)
	var ids []string
	// Same millisecond, forward, backwards by an hour, and forward again.
	for _, at := range []time.Time{base, base, base, base.Add(time.Millisecond), base.Add(-time.Hour), base.Add(-time.Hour), base, base.Add(2 * time.Millisecond)} {
		ids = append(ids, g.next(at))
	}
	// The random part wraps within one millisecond: the id borrows the next one.
	for i := range g.random {
		g.random[i] = 63
	}
	ids = append(ids, g.next(base), g.next(base))
	for i, id := range ids {
		if !validPushID(id) {
			t.Errorf("id %d %q is not a push id", i, id)
		}
		if i > 0 && id <= ids[i-1] {
			t.Errorf("id %d %q not after id %d %q", i, id, i-1, ids[i-1])
		}
	}
	if got, want := decodePushTime(ids[0]), base.UnixMilli(); got != want {
		t.Errorf("time part of %q = %d, want %d", ids[0], got, want)
	}
	if ids[1][:8] != ids[0][:8] || ids[1][8:] <= ids[0][8:] {
		t.Errorf("same millisecond: %q then %q, want the same time part and an incremented random part", ids[0], ids[1])
	}
	if got, want := ids[len(ids)-2], ids[len(ids)-3]; decodePushTime(got) != decodePushTime(want)+1 || got[8:] != strings.Repeat("-", 12) {
		t.Errorf("after wrapping: %q follows %q, want the next millisecond and a zero random part", got, want)
	}
}
