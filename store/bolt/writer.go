package bolt

import (
	"errors"
	"fmt"
	"time"

	"github.com/sigbase/sigbase/store"
	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// op is one item of the writer's queue: a write, or a sweep of expired
// rooms (write nil). The caller fills write; the writer fills res and err,
// then closes done.
type op struct {
	write *store.Write

	done chan struct{}
	res  store.Result
	err  error
	more bool // a sweep: more rooms are due
}

// write is the writer goroutine: it takes everything queued (up to maxGroup),
// applies it in one transaction, commits, replies to each caller, then hands
// the committed changes to watchers in revision order.
func (s *engine) write() {
	defer close(s.writerDone)
	defer close(s.committed)
	batch := make([]*op, 0, maxGroup)
	for first := range s.ops {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxGroup {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

func (s *engine) commit(batch []*op) {
	start := time.Now()
	var t *txn
	err := s.db.Update(func(tx *bbolt.Tx) error {
		t = s.newTxn(tx, start)
		for _, o := range batch {
			o.res, o.err = t.run(o)
			if o.err != nil && !isOpError(o.err) {
				return o.err
			}
		}
		return t.countRooms(s.rooms.Load())
	})
	if errors.Is(err, berrors.ErrMaxSizeReached) && len(batch) > 1 {
		// One large write must not fail the small ones that still fit.
		for _, o := range batch {
			s.commit([]*op{o})
		}
		return
	}
	elapsed := time.Since(start)
	var changes []*store.Change
	if err != nil {
		err = storageError(err)
		s.opts.Logger.Error("commit failed", "ops", len(batch), "err", err)
		for _, o := range batch {
			o.res, o.err, o.more = store.Result{}, err, false
			close(o.done)
		}
	} else {
		if n := len(t.changes); n > 0 {
			s.rev.Store(t.changes[n-1].Rev())
		}
		s.rooms.Add(t.roomsDelta)
		s.expired.Add(t.expired)
		for _, o := range batch {
			close(o.done)
		}
		changes = t.changes
	}
	s.committed <- committedGroup{changes: changes, ops: len(batch), elapsed: elapsed, err: err}
}

// committedGroup is what the writer hands the publisher after a commit.
type committedGroup struct {
	changes []*store.Change
	ops     int
	elapsed time.Duration
	err     error
}

// publish is the publisher goroutine: it hands committed changes to the
// watchers, group after group in commit order, while the writer goes on
// with the next commit. OnCommit runs after the group's changes are out.
func (s *engine) publish() {
	defer close(s.publisherDone)
	for g := range s.committed {
		s.hub.Publish(g.changes)
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(g.ops, g.elapsed, g.err)
		}
	}
}

// isOpError tells a write's own failure (it changed nothing and the group
// goes on) from a storage failure that aborts the whole group.
func isOpError(err error) bool {
	for _, e := range []error{store.ErrConditionFailed, store.ErrInvalidPath, store.ErrInvalidValue, store.ErrValueTooLarge,
		store.ErrTooManyKeys, store.ErrTooManyChildren, store.ErrRoomTooLarge} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func storageError(err error) error {
	if errors.Is(err, berrors.ErrMaxSizeReached) {
		return fmt.Errorf("%w: %v", store.ErrDatabaseFull, err)
	}
	return fmt.Errorf("commit: %w", err)
}
