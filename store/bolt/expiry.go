package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"

	"github.com/sigbase/sigbase/store"
	bbolt "go.etcd.io/bbolt"
)

// sweep is the TTL sweeper goroutine: every sweepInterval it has the writer
// delete the rooms that are due, in batches of at most maxGroup rooms.
func (s *engine) sweep(ctx context.Context) {
	defer close(s.sweeperDone)
	tick := time.NewTicker(s.sweepInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for s.due() {
			var more bool
			o := &op{run: func(t *txn) (err error) { more, err = t.sweep(maxGroup); return err }}
			if err := s.submit(ctx, o); err != nil || !more {
				break
			}
		}
		s.hub.ForgetLeftBefore(time.Now().Add(-s.opts.RoomTTL))
	}
}

// sweepInterval is a quarter of the TTL, between 50 ms and a minute: a room
// goes within 1.25 TTL of its last write (or watcher).
func (s *engine) sweepInterval() time.Duration {
	return max(50*time.Millisecond, min(time.Minute, s.opts.RoomTTL/4))
}

// due reports, in a read-only look, whether any expiry index entry has
// come due: most ticks then cost no write transaction.
func (s *engine) due() bool {
	now := time.Now().UnixNano()
	var due bool
	_ = s.db.View(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketExpiry).Cursor().First()
		due = len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= now
		return nil
	})
	return due
}

// sweep deletes up to limit rooms whose expiry has passed, in index order.
// A room that is watched, or whose last watcher left less than the TTL ago,
// is kept and its expiry moved. So is every room during the TTL after Open:
// who watched before a restart is unknown, and a watched room must not
// expire. It reports whether more rooms may be due.
func (t *txn) sweep(limit int) (bool, error) {
	now := t.now.UnixNano()
	var due [][]byte
	c := t.expiry.Cursor()
	for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > now {
			break
		}
		due = append(due, bytes.Clone(k))
	}
	for _, k := range due {
		room := string(k[8:])
		meta, ok, err := readMeta(t.rooms, room)
		if err != nil {
			return false, err
		}
		if !ok || !bytes.Equal(expiryKey(meta.indexed, room), k) {
			if err := t.del(redoExpiry, k); err != nil { // stale: cannot happen, but must not stick
				return false, err
			}
			continue
		}
		if meta.expires > now { // written since it was indexed
			if err := t.reindex(room, &meta, true, meta.expires); err != nil {
				return false, err
			}
			if err := t.putMeta(room, meta); err != nil {
				return false, err
			}
			continue
		}
		if keep := t.s.keepUntil(room, t.now); keep.After(t.now) {
			if err := t.postpone(room, meta, keep); err != nil {
				return false, err
			}
			continue
		}
		if _, err := t.apply(store.RemoveRoom(room)); err != nil {
			return false, err
		}
		t.expired++
	}
	return len(due) == limit, nil
}

// keepUntil is the earliest time the room may expire given its watchers.
func (s *engine) keepUntil(room string, now time.Time) time.Time {
	watched, lastLeft := s.hub.Watching(room)
	if watched {
		return now.Add(s.opts.RoomTTL)
	}
	keep := s.started.Add(s.opts.RoomTTL)
	if !lastLeft.IsZero() {
		keep = later(keep, lastLeft.Add(s.opts.RoomTTL))
	}
	return keep
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// postpone moves a room's expiry to until.
func (t *txn) postpone(room string, meta roomMeta, until time.Time) error {
	meta.expires = until.UnixNano()
	if err := t.reindex(room, &meta, true, meta.expires); err != nil {
		return err
	}
	return t.putMeta(room, meta)
}
