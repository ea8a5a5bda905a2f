package store

import (
	"math/rand/v2"
	"time"
)

// pushAlphabet is Firebase's: its byte order is ASCII order, so push ids sort
// by creation time.
const pushAlphabet = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

// PushIDs makes Firebase push ids: 8 characters of millisecond time, then 12
// random characters that are incremented instead of redrawn within one
// millisecond. An engine keeps one and uses it in commit order
// (Write.NamePush), so ids sort in revision order, also if the clock steps
// back. It is not safe for concurrent use.
type PushIDs struct {
	lastMillis int64
	random     [12]byte // indexes into pushAlphabet
}

func (g *PushIDs) next(now time.Time) string {
	ms := now.UnixMilli()
	if ms > g.lastMillis {
		g.lastMillis = ms
		for i := range g.random {
			g.random[i] = byte(rand.IntN(64))
		}
	} else if !g.increment() {
		// All 12 characters wrapped within one millisecond: borrow the next one.
		g.lastMillis++
	}
	var id [20]byte
	t := g.lastMillis
	for i := 7; i >= 0; i-- {
		id[i] = pushAlphabet[t%64]
		t /= 64
	}
	for i, r := range g.random {
		id[8+i] = pushAlphabet[r]
	}
	return string(id[:])
}

// increment adds one to the random part; false when it wrapped to all zeros.
func (g *PushIDs) increment() bool {
	for i := len(g.random) - 1; i >= 0; i-- {
		if g.random[i] < 63 {
			g.random[i]++
			return true
		}
		g.random[i] = 0
	}
	return false
}
