package bolt

import (
	"fmt"
	"github.com/sigbase/sigbase/store"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const testTTL = 300 * time.Millisecond

// pollUntil polls cond every 10ms until it holds and returns when it did.
func pollUntil(t testing.TB, limit time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *testStore) absent(t testing.TB, at string) func() bool {
	return func() bool {
		v := s.get(t, at)
		return v.Rev == 0 && string(v.Data) == "null"
	}
}

func TestExpiryUnwatchedRoom(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{RoomTTL: testTTL})
	before := time.Now()
	s.put(t, "r", `{"offer":"o","answer":"a"}`)
	s.put(t, "r2/k", `1`)
	if got := s.Stats().Rooms; got != 2 {
		t.Fatalf("Stats().Rooms = %d, want 2", got)
	}
	gone := pollUntil(t, 10*time.Second, "room r expired", s.absent(t, "r"))
	if d := gone.Sub(before); d < testTTL {
		t.Errorf("room expired %v after its write, before the TTL %v", d, testTTL)
	}
	t.Logf("room expired %v after its write (TTL %v, sweep every %v)", gone.Sub(before), testTTL, testTTL)
	pollUntil(t, 10*time.Second, "room r2 expired", s.absent(t, "r2/k"))
	// The counters move just after the commit that readers already see.
	pollUntil(t, 10*time.Second, "two expiries counted", func() bool { return s.Stats().Expired == 2 })
	st := s.Stats()
	if st.Expired != 2 || st.Rooms != 0 || st.Revision != 4 {
		t.Errorf("Stats = %+v, want Expired 2, Rooms 0, Revision 4 (each expiry is a revision)", st)
	}
}

// TestExpiryKeptByWrites: a room written more often than its TTL stays.
func TestExpiryKeptByWrites(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{RoomTTL: testTTL})
	s.put(t, "busy/k", `0`)
	s.put(t, "idle/k", `0`)
	// Write busy every TTL/3 until idle, written at the same time, expired,
	// and once more until a second control room expired.
	for i, ctl := range []string{"idle", "idle2"} {
		if i > 0 {
			s.put(t, ctl+"/k", `0`)
		}
		n := 0
		pollUntil(t, 10*time.Second, ctl+" expired", func() bool {
			n++
			if n%10 == 0 { // every ~100ms
				s.put(t, "busy/k", fmt.Sprint(n))
			}
			return s.absent(t, ctl+"/k")()
		})
		if s.absent(t, "busy")() {
			t.Fatalf("room written every ~100ms expired with TTL %v", testTTL)
		}
	}
	stopped := time.Now()
	gone := pollUntil(t, 10*time.Second, "busy expired after its writes stopped", s.absent(t, "busy"))
	if d := gone.Sub(stopped); d < testTTL-110*time.Millisecond {
		t.Errorf("busy expired %v after its writes stopped, want about the TTL %v", d, testTTL)
	}
}

// TestExpiryWatchedRoom: a watched room does not expire; it expires about a
// TTL after its last watcher left.
func TestExpiryWatchedRoom(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{RoomTTL: testTTL})
	s.put(t, "watched/offer", `"o"`)
	w := s.watch(t, "watched/answer", 0, false) // any location in the room counts
	drain(t, w)
	for _, ctl := range []string{"ctl1", "ctl2", "ctl3"} {
		s.put(t, ctl+"/k", `1`)
		pollUntil(t, 10*time.Second, ctl+" expired", s.absent(t, ctl+"/k"))
		if s.absent(t, "watched")() {
			t.Fatalf("watched room expired (after %s)", ctl)
		}
	}
	if evs := drain(t, w); len(evs) != 0 {
		t.Errorf("watcher of the kept room got %v, want nothing", evs)
	}
	w.Close()
	left := time.Now()
	gone := pollUntil(t, 10*time.Second, "room expired after its watcher left", s.absent(t, "watched"))
	if d := gone.Sub(left); d < testTTL {
		t.Errorf("room expired %v after its watcher left, before the TTL %v", d, testTTL)
	}
	// The counter moves just after the commit that readers already see.
	pollUntil(t, 5*time.Second, "Stats().Expired = 4", func() bool { return s.Stats().Expired == 4 })
}

// TestExpiryNotRightAfterOpen: after a restart, rooms already due are kept
// for one TTL, since who watched them before is unknown.
func TestExpiryNotRightAfterOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sigbase.db")
	s := openPath(t, path, store.Options{RoomTTL: testTTL})
	written := time.Now()
	s.put(t, "r/k", `1`)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Wall-clock time must pass for the room to be due: nothing to poll.
	time.Sleep(time.Until(written.Add(testTTL + 50*time.Millisecond)))
	opened := time.Now()
	s = openPath(t, path, store.Options{RoomTTL: testTTL})
	if s.absent(t, "r")() {
		t.Fatal("a due room was deleted right after Open")
	}
	gone := pollUntil(t, 10*time.Second, "due room expired after reopen", s.absent(t, "r"))
	if d := gone.Sub(opened); d < testTTL {
		t.Errorf("due room expired %v after Open, before the TTL %v", d, testTTL)
	}
}

// TestExpiryManyRooms: one sweep deletes every due room, in bounded
// batches, not one batch per sweep interval (fake clock).
func TestExpiryManyRooms(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const ttl = time.Hour // swept every minute
		s := openStore(t, store.Options{RoomTTL: ttl})
		const rooms = 1500 // more than one sweep transaction (maxGroup)
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := g; i < rooms; i += 16 {
					if _, err := s.Put(t.Context(), mustPath(t, fmt.Sprintf("m%d", i), "k", ""), []byte(`1`), store.Cond{}); err != nil {
						t.Errorf("Put: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		time.Sleep(ttl - 30*time.Second)
		synctest.Wait()
		if got := s.Stats().Rooms; got != rooms {
			t.Fatalf("Stats().Rooms = %d before the TTL, want %d", got, rooms)
		}
		time.Sleep(time.Minute) // exactly one sweep
		synctest.Wait()
		if st := s.Stats(); st.Rooms != 0 || st.Expired != rooms || st.Revision != 2*rooms {
			t.Errorf("after one sweep Stats = %+v, want Rooms 0, Expired %d, Revision %d", st, rooms, 2*rooms)
		}
	})
}

// TestDeleteSeenByWatchers: every watcher connected when a room is deleted
// sees put / null.
func TestDeleteSeenByWatchers(t *testing.T) {
	t.Parallel()
	s := openStore(t, store.Options{RoomTTL: testTTL})
	s.put(t, "r", `{"offer":{"sdp":"o"},"cands":{"c1":1}}`)
	ats := []string{"r", "r/offer", "r/offer/sdp", "r/cands/c1", "r/absent", "r/absent/x"}
	ws := map[string]*store.Watcher{}
	for _, at := range ats {
		ws[at] = s.watch(t, at, 0, false)
		drain(t, ws[at])
	}
	res := s.del(t, "r")
	s.waitPublished(t, res.Rev)
	for _, at := range ats {
		checkEvents(t, "watcher of "+at, drain(t, ws[at]), res.Rev, "put / null")
	}
	if got := s.Stats().Expired; got != 0 {
		t.Errorf("Stats().Expired = %d after a DELETE, want 0", got)
	}
}

// TestExpiryLongTTL runs an hour-scale TTL on a fake clock: rooms are swept
// at least every minute, never while watched, not before a TTL after their
// last watcher left, and not before a TTL after Open.
func TestExpiryLongTTL(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const ttl = 2 * time.Hour
		path := filepath.Join(t.TempDir(), "sigbase.db")
		s := openPath(t, path, store.Options{RoomTTL: ttl})
		s.put(t, "idle/k", `1`)
		s.put(t, "watched/k", `1`)
		w := s.watch(t, "watched", 0, false)
		drain(t, w)

		time.Sleep(ttl - time.Second)
		synctest.Wait()
		if s.absent(t, "idle")() {
			t.Fatal("idle room expired before its TTL")
		}
		time.Sleep(time.Minute + 2*time.Second) // the sweep runs at least every minute
		synctest.Wait()
		if !s.absent(t, "idle")() {
			t.Fatal("idle room still there a minute after its TTL")
		}

		time.Sleep(3 * ttl)
		synctest.Wait()
		if s.absent(t, "watched")() {
			t.Fatal("watched room expired")
		}
		w.Close()
		time.Sleep(ttl - time.Minute - time.Second)
		synctest.Wait()
		if s.absent(t, "watched")() {
			t.Fatal("room expired before a TTL after its watcher left")
		}
		time.Sleep(2*time.Minute + 2*time.Second)
		synctest.Wait()
		if !s.absent(t, "watched")() {
			t.Fatal("room still there a TTL and a minute after its watcher left")
		}
		if got := s.Stats().Expired; got != 2 {
			t.Errorf("Stats().Expired = %d, want 2", got)
		}

		// After a restart a room already due is kept for a TTL after Open.
		s.put(t, "due/k", `1`)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * ttl)
		s = openPath(t, path, store.Options{RoomTTL: ttl})
		time.Sleep(ttl - time.Second)
		synctest.Wait()
		if s.absent(t, "due")() {
			t.Fatal("a due room expired less than a TTL after Open")
		}
		time.Sleep(time.Minute + 2*time.Second)
		synctest.Wait()
		if !s.absent(t, "due")() {
			t.Fatal("a due room still there a TTL and a minute after Open")
		}
	})
}
