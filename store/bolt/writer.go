package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/bolt/wal"
	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// op is one item of the writer's queue: a write, or (write nil) run, which
// changes the buckets through the txn: a sweep of expired rooms, an
// onDisconnect record. The writer fills res and err, then closes done.
type op struct {
	write *store.Write
	run   func(t *txn) error

	done chan struct{}
	res  store.Result
	err  error
}

// write is the writer goroutine: it takes everything queued (up to
// maxGroup), applies it as one group, makes it durable, replies to each
// caller, then hands the committed changes to watchers in revision order.
// With the log, a group is durable once its redo record is in the log; the
// groups accumulate in one bbolt transaction (the batch) that is committed
// every commitInterval, or sooner when the log grows large.
func (s *engine) write() {
	defer close(s.writerDone)
	defer close(s.committed)
	defer s.finish()
	batch := make([]*op, 0, maxGroup)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var first *op
		if s.wtx == nil {
			o, ok := <-s.ops
			if !ok {
				return
			}
			first = o
		} else {
			wait := s.tune.commitInterval - time.Since(s.batchStart)
			if wait <= 0 {
				s.checkpoint()
				continue
			}
			timer.Reset(wait)
			select {
			case o, ok := <-s.ops:
				timer.Stop()
				if !ok {
					return
				}
				first = o
			case <-timer.C:
				s.checkpoint()
				continue
			}
		}
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

// finish commits the batch as the writer stops. If bbolt fails it, the
// rebuilt batch is dropped, to release bbolt's write lock for Close: the
// log keeps the groups for the next start.
func (s *engine) finish() {
	s.checkpoint()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wtx != nil {
		_ = s.wtx.Rollback()
		s.wtx = nil
	}
}

// errNearFull: the batch might not fit under Options.MaxSize when committed.
var errNearFull = errors.New("the database is near its size limit")

// commit applies a group to the batch and appends its redo record to the
// log. Readers of the batch (view) wait on mu until the record is durable,
// so nothing is seen before it is.
func (s *engine) commit(batch []*op) {
	if s.broken != nil {
		s.reply(batch, nil, time.Now(), s.broken)
		return
	}
	if s.wal == nil || s.direct {
		s.commitDirect(batch)
		return
	}
	start := time.Now()
	s.mu.Lock()
	if s.wtx == nil {
		tx, err := s.db.Begin(true)
		if err != nil {
			s.mu.Unlock()
			s.reply(batch, nil, start, storageError(err))
			return
		}
		s.wtx, s.batchStart = tx, start
	}
	s.redo.reset()
	t := s.newTxn(s.wtx, start, &s.redo)
	err := t.runAll(batch)
	if err == nil && s.nearFull() {
		err = errNearFull
	}
	if err == nil {
		err = s.wal.Append(s.redo.b)
	}
	if err != nil {
		// The batch holds part of this group: rebuild it from the records
		// of the groups before.
		rebuilt := s.rebuild()
		s.mu.Unlock()
		for _, o := range batch {
			o.res, o.err = store.Result{}, nil
		}
		switch {
		case rebuilt != nil:
			// The logged groups are in the log still, for the next start;
			// acknowledging more would not be honest.
			s.opts.Logger.Error("rebuilding the batch failed: writes stop; the log keeps the groups for the next start", "err", rebuilt)
			s.broken = storageError(rebuilt)
			s.reply(batch, nil, start, s.broken)
		case errors.Is(err, wal.ErrFull):
			s.checkpoint() // which empties the log
			s.commit(batch)
		case errors.Is(err, errNearFull), errors.Is(err, wal.ErrTooLarge):
			// Close to MaxSize, each group commits on its own, so that the
			// one that does not fit fails alone; a group too large for the
			// log goes to bbolt directly.
			s.checkpoint()
			if errors.Is(err, errNearFull) {
				s.direct = true
			}
			s.commitDirect(batch)
		case !t.failed: // the log's own write or sync failed
			// A log that failed a write or a sync cannot be trusted again:
			// once bbolt has the batch (checkpoint then removes the log, as
			// it cannot be reset), every group commits to bbolt with its own
			// sync. A checkpoint that fails leaves the log for the next start.
			s.opts.Logger.Error("write-ahead log failed: committing to bbolt directly from now on", "err", err)
			s.direct = true
			s.checkpoint()
			s.commitDirect(batch)
		default:
			s.reply(batch, nil, start, storageError(err))
		}
		return
	}
	s.pending = append(s.pending, bytes.Clone(s.redo.b))
	s.pendingBytes += int64(len(s.redo.b))
	s.pendingMuts += s.redo.n
	s.mu.Unlock()
	s.reply(batch, t, start, nil)
	if s.wal.Size() >= s.tune.commitLogBytes || s.pendingMuts >= s.tune.commitMutations {
		s.checkpoint()
	}
}

// runAll runs a group's ops; a storage failure (not an op's own) stops it.
func (t *txn) runAll(batch []*op) error {
	for _, o := range batch {
		o.res, o.err = t.run(o)
		if o.err != nil && !isOpError(o.err) {
			t.failed = true
			return o.err
		}
	}
	if err := t.countRooms(t.s.rooms.Load()); err != nil {
		t.failed = true
		return err
	}
	return nil
}

// nearFull reports whether committing the batch could pass half of
// MaxSize. The bound is generous: every mutation may rewrite three pages,
// and every byte written may be copied twice.
func (s *engine) nearFull() bool {
	if s.opts.MaxSize <= 0 {
		return false
	}
	page := int64(s.db.Info().PageSize)
	bound := 2*(s.pendingBytes+int64(len(s.redo.b))) + 3*page*int64(s.pendingMuts+s.redo.n+8)
	return s.wtx.Size()+bound > int64(s.opts.MaxSize)/2
}

// rebuild replaces the batch with one made from the pending records: after
// a group failed halfway through it. It runs with mu held.
func (s *engine) rebuild() error {
	if s.wtx != nil {
		if err := s.wtx.Rollback(); err != nil {
			return err
		}
		s.wtx = nil
	}
	if len(s.pending) == 0 {
		return nil
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	for _, rec := range s.pending {
		if err := replayRedo(tx, rec); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	s.wtx = tx
	return nil
}

// checkpoint commits the batch to bbolt (which syncs it) and empties the
// log. If bbolt fails the commit (a full or failing disk), the groups are
// still in the log: the batch is rebuilt from their records so that what
// was acknowledged stays readable, writes fail until a later checkpoint
// (every commitInterval) succeeds, and the next start replays the log.
func (s *engine) checkpoint() {
	s.mu.Lock()
	if s.wtx == nil {
		s.mu.Unlock()
		return
	}
	err := s.wtx.Commit()
	s.wtx = nil
	if err != nil {
		if s.broken == nil {
			s.opts.Logger.Error("committing the batch to bbolt failed: writes fail until it succeeds; the log keeps the batch", "groups", len(s.pending), "err", err)
		}
		s.broken = storageError(err)
		if rerr := s.rebuild(); rerr != nil {
			s.opts.Logger.Error("rebuilding the batch failed: acknowledged writes are in the log only until the next start", "err", rerr)
		}
		s.batchStart = time.Now()
		s.mu.Unlock()
		return
	}
	s.broken = nil
	s.pending, s.pendingBytes, s.pendingMuts = nil, 0, 0
	s.mu.Unlock()
	s.emptyLog()
}

// emptyLog resets the log once bbolt has its records. A log that cannot be
// reset is removed: its records must not replay over later commits.
func (s *engine) emptyLog() {
	if s.wal == nil {
		return
	}
	err := s.wal.Reset()
	if err == nil {
		return
	}
	s.opts.Logger.Error("emptying the write-ahead log failed: removing it, and committing to bbolt directly from now on", "err", err)
	s.wal.Close()
	s.wal, s.direct = nil, true
	if err := os.Remove(s.walPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.broken = fmt.Errorf("remove %s: %w", s.walPath, err)
		s.opts.Logger.Error("removing the write-ahead log failed: writes fail", "err", err)
	}
}

// commitDirect applies a group in a bbolt transaction of its own and
// commits it, with bbolt's own syncs: without the log, or near MaxSize.
func (s *engine) commitDirect(batch []*op) {
	start := time.Now()
	if s.broken != nil {
		s.reply(batch, nil, start, s.broken)
		return
	}
	var t *txn
	err := s.db.Update(func(tx *bbolt.Tx) error {
		s.redo.reset()
		t = s.newTxn(tx, start, &s.redo)
		return t.runAll(batch)
	})
	if errors.Is(err, berrors.ErrMaxSizeReached) && len(batch) > 1 {
		// One large write must not fail the small ones that still fit.
		for _, o := range batch {
			s.commitDirect([]*op{o})
		}
		return
	}
	if err != nil {
		s.reply(batch, nil, start, storageError(err))
		return
	}
	s.reply(batch, t, start, nil)
}

// reply finishes a group: on success t holds its changes, on failure every
// op fails with err. Then the changes go to the publisher.
func (s *engine) reply(batch []*op, t *txn, start time.Time, err error) {
	elapsed := time.Since(start)
	var changes []*store.Change
	if err != nil {
		s.opts.Logger.Error("commit failed", "ops", len(batch), "err", err)
		for _, o := range batch {
			o.res, o.err = store.Result{}, err
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
		if n := len(g.changes); n > 0 {
			s.published.Store(g.changes[n-1].Rev())
		}
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
