// Package storetest holds tests that run against any storage engine of the
// store through the seam (store.Engine, behind a *store.Store), so that
// every engine gets them: an engine's own tests call them with a Harness
// that opens its stores and says how the engine may differ where the model
// allows it.
//
// RunModel is the randomized model test: it drives a store through the
// public API and holds every read, ETag, revision, watcher and resume to the
// JSON reference model of store/internal/model.
package storetest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
)

// Harness is what RunModel needs of an engine. Open is required; the other
// fields describe the engine's own choices where the model leaves one.
// Their zero values describe store/bolt.
type Harness struct {
	// Open opens a fresh, empty store for one run with these options (pass
	// OnCommit on if you use it), closed by the test's cleanup. The store's
	// Stats().Revision when Open returns is the run's base revision: the
	// revision before its first write (0 on a new bbolt file; wherever the
	// server is on etcd).
	Open func(t *testing.T, opts store.Options) *store.Store

	// Bookkeeping, if set, checks the engine's own records of a room against
	// what is stored and reports the room's incarnation: the revision that
	// created it and its resume floor (the revision after which the room's
	// change log holds every change); ok false when the engine holds no such
	// room. The model checks created always, and floor when it knows the
	// floor exactly.
	Bookkeeping func(t *testing.T, s *store.Store, room string) (created, floor uint64, ok bool)

	// Published, if set, waits until every change committed up to rev has
	// been handed to the store's watchers (bbolt: its OnCommit runs after
	// the writer published). The model then drains its watchers once and
	// requires each copy to equal the model right away. Without it (an
	// engine that delivers through its own asynchronous feed, as etcd's
	// watches do) the model drains each watcher repeatedly until its copy
	// equals the model and it has seen the location's last change, failing
	// after PublishTimeout.
	Published func(t *testing.T, s *store.Store, rev uint64)
	// PublishTimeout bounds that wait for one watcher: 10 s when zero.
	PublishTimeout time.Duration

	// NoOpKeepsRevision: a write that leaves an absent room absent (a
	// delete, or a value of only nulls and empty objects, in a room that
	// does not exist) commits nothing: it takes no revision and reports the
	// current one (etcd). When false every accepted write takes the next
	// revision, so revisions have no gaps (bbolt).
	NoOpKeepsRevision bool

	// FullHistory: the engine resumes from a history that keeps every
	// change (etcd's, which the test never compacts), not from a per-room
	// log trimmed to the limits (bbolt). A resume of a room that exists,
	// from any revision up to the head, then replays, even from before the
	// room's creation or across its deletions and re-creations (the replay
	// carries the deletion and the new room); the room's floor is 0, and
	// the log limits trim nothing. When false a room's log starts at its
	// creation and is trimmed to Limits.MaxLogEntries and MaxLogBytes:
	// resumes from before the floor get a snapshot.
	FullHistory bool

	// Serial: the runs share one revision counter (several stores on one
	// etcd server), so they run one after another, each alone writing
	// while it runs. When false the runs are parallel subtests.
	Serial bool

	// RevisionScale, if above 1: the engine's revisions step by it. The
	// model, writing one write at a time, counts the engine's revision r as
	// r / RevisionScale, gives a write's revision as k × RevisionScale (an
	// If-Match), and resumes after k from k × RevisionScale + RevisionScale
	// − 1 (etcd: a write's revision is its etcd revision × 1000 + its slot
	// in its transaction, and a read's is its etcd revision × 1000).
	RevisionScale uint64

	// Ops, if positive, is the number of writes of each run instead of 500.
	Ops int

	// ParallelResumes, if above 1, is how many of a checkpoint's resumes
	// (watchers opened with Last-Event-ID and read to their first events)
	// are opened at once; the model checks them one by one afterwards, in
	// the same order. For an engine whose resumes wait on something other
	// than work: an etcd replay is a watch from a past revision, which etcd
	// serves from a loop that runs every 100 ms.
	ParallelResumes int
}

// Decode parses JSON into plain Go values for semantic comparison.
func Decode(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("stored value %q is not JSON: %v", b, err)
	}
	return v
}

// Loc parses "room", "room/key" or "room/key/child".
func Loc(t testing.TB, s string) store.Path {
	t.Helper()
	parts := strings.Split(s, "/")
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	if len(parts) != 3 {
		t.Fatalf("Loc(%q): too deep", s)
	}
	p, err := store.NewPath(parts[0], parts[1], parts[2])
	if err != nil {
		t.Fatalf("NewPath(%q): %v", s, err)
	}
	return p
}

// Drain returns the events the watcher has ready now. Every change handed
// to the watcher before the call is among them: publishing signals Ready,
// and Next re-signals while it has more (a snapshot, a log page).
func Drain(t testing.TB, w *store.Watcher) []store.Event {
	t.Helper()
	var out []store.Event
	for {
		select {
		case <-w.Ready():
			evs, err := w.Next()
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			out = append(out, evs...)
		default:
			return out
		}
	}
}
