package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/bolt/wal"
	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// engine keeps rooms in one bbolt file, written by one goroutine.
type engine struct {
	db      *bbolt.DB
	opts    store.Options // static after Open
	started time.Time
	hub     *store.Hub

	ops        chan *op      // to the writer goroutine, bounded by Options.WriteQueue
	queueWait  time.Duration // how long a write waits for room in ops
	pushIDs    store.PushIDs // owned by the writer goroutine
	closeMu    sync.RWMutex  // guards closed against sends on ops
	closed     bool          // ops is closed
	writerDone chan struct{} // closed when the writer returned

	committed     chan committedGroup // from the writer to the publisher
	publisherDone chan struct{}

	stopSweeper context.CancelFunc
	sweeperDone chan struct{}

	rev       atomic.Uint64 // last committed revision
	published atomic.Uint64 // last revision handed to the hub: behind rev while groups wait in committed
	rooms     atomic.Int64  // rooms stored
	expired   atomic.Uint64 // rooms deleted by the TTL sweep since Open

	// The batch (writer.go). mu is held while the writer applies and logs
	// a group, commits the batch, and by readers of the batch.
	tune         tuning
	wal          *wal.Log // nil: no log (every group commits to bbolt itself)
	walPath      string
	mu           sync.Mutex
	wtx          *bbolt.Tx // the logged groups not yet committed to bbolt; nil: none
	batchStart   time.Time
	pending      [][]byte // the redo records of the groups in wtx (writer only)
	pendingBytes int64
	pendingMuts  int
	redo         redo  // the writer's buffer for a group's redo record
	direct       bool  // groups commit to bbolt directly: near MaxSize, or the log failed
	broken       error // the batch could not reach bbolt: writes fail
}

// tuning is when the batch goes to bbolt: every commitInterval, or when the
// log or the batch grows past a bound, whichever comes first.
type tuning struct {
	commitInterval  time.Duration
	commitLogBytes  int64
	commitMutations int
	logBytes        int64 // the log's size limit
}

func defaultTuning() tuning {
	return tuning{commitInterval: 100 * time.Millisecond, commitLogBytes: 16 << 20, commitMutations: 50_000, logBytes: 64 << 20}
}

// maxGroup caps how many queued writes share one commit.
const maxGroup = 1000

// catchUpPageBytes bounds the log one ChangesAfter reads, so no read
// transaction stays open long.
const catchUpPageBytes = 1 << 20

// Open opens or creates the database at path and starts its writer and TTL
// sweeper. A file locked by another process fails with ErrLocked after
// Options.OpenTimeout.
//
// Writes are durable once they are in the write-ahead log beside the file
// (path + ".wal"); bbolt gets them in batches. Open replays what the log
// holds; a log that is damaged (not just cut off at its end) makes Open fail
// with an error naming the offset, rather than drop what may have been
// acknowledged.
func Open(path string, opts store.Options) (*store.Store, error) {
	return store.New(opts, func(h *store.Hub, opts store.Options) (store.Engine, error) {
		return open(path, h, opts, defaultTuning())
	})
}

func open(path string, h *store.Hub, opts store.Options, tune tuning) (*engine, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        opts.OpenTimeout,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		MaxSize:        opts.MaxSize,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, store.ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &engine{
		db: db, opts: opts, started: time.Now(), hub: h, tune: tune,
		ops:        make(chan *op, opts.WriteQueue),
		queueWait:  time.Second,
		writerDone: make(chan struct{}),
		// A full queue makes the writer wait: publishing is memory-only and
		// never waits on a watcher.
		committed:     make(chan committedGroup, 256),
		publisherDone: make(chan struct{}),
		sweeperDone:   make(chan struct{}),
	}
	if err := s.init(path + ".wal"); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	go s.write()
	go s.publish()
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSweeper = cancel
	go s.sweep(ctx)
	return s, nil
}

// init creates the buckets, replays the log into bbolt and loads the
// counters.
func (s *engine) init(walPath string) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range redoBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(schemaKey); {
		case v == nil:
			if err := meta.Put(schemaKey, []byte{schemaVersion}); err != nil {
				return err
			}
		case len(v) != 1 || v[0] != schemaVersion:
			return fmt.Errorf("unknown schema version %v", v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	log, recs, err := wal.Open(walPath, wal.Options{MaxBytes: s.tune.logBytes, Logger: s.opts.Logger})
	if err != nil {
		return err
	}
	if len(recs) > 0 {
		// The groups logged since the last batch reached bbolt. Replaying a
		// group bbolt already has is harmless (redo.go).
		err = s.db.Update(func(tx *bbolt.Tx) error {
			for _, rec := range recs {
				if err := replayRedo(tx, rec); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			log.Close()
			return fmt.Errorf("replay %s: %w", walPath, err)
		}
		s.opts.Logger.Info("replayed the write-ahead log", "groups", len(recs))
	}
	if err := log.Reset(); err != nil {
		log.Close()
		return err
	}
	s.wal, s.walPath = log, walPath
	return s.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s.rev.Store(meta.Sequence())
		if n := meta.Get(roomCountKey); len(n) == 8 {
			s.rooms.Store(int64(binary.BigEndian.Uint64(n)))
		}
		return nil
	})
}

// Close stops the sweeper and the writer (queued writes are committed
// first) and closes the file.
func (s *engine) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return store.ErrClosed
	}
	s.closed = true
	close(s.ops) // no sender holds closeMu now, and none will send again
	s.closeMu.Unlock()
	s.stopSweeper()
	<-s.sweeperDone
	<-s.writerDone
	<-s.publisherDone
	if s.wal != nil {
		if err := s.wal.Close(); err != nil {
			s.db.Close()
			return err
		}
	}
	return s.db.Close()
}

// view runs fn on what readers may see: the batch when there is one (its
// groups are in the log), else a read-only transaction. fn must not change
// anything. A closed database is ErrClosed.
func (s *engine) view(fn func(tx *bbolt.Tx) error) error {
	s.mu.Lock()
	if s.wtx != nil {
		defer s.mu.Unlock()
		return fn(s.wtx)
	}
	s.mu.Unlock()
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

func (s *engine) Read(at store.Path) (store.Value, error) {
	var v store.Value
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		v.Data, v.Rev, err = readAt(tx, at)
		return err
	})
	return v, err
}

func (s *engine) Stats() store.Stats {
	return store.Stats{Revision: s.rev.Load(), Rooms: s.rooms.Load(), Expired: s.expired.Load()}
}

// Each room's changes reach the hub from the writer: nothing to set up.
func (s *engine) Watched(string) (func(), error) { return nil, nil }

// Submit hands a write to the writer and waits for its commit. Once queued,
// a write is committed or failed whatever happens to ctx.
func (s *engine) Submit(ctx context.Context, w *store.Write) (store.Result, error) {
	o := &op{write: w}
	return o.res, s.submit(ctx, o)
}

// submit queues an op for the writer and waits for it; the op's own
// outcome is in o.res and o.err.
func (s *engine) submit(ctx context.Context, o *op) error {
	o.done = make(chan struct{})
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return store.ErrClosed
	}
	select {
	case s.ops <- o:
	default:
		// The queue is full: wait a little for room, then refuse rather
		// than let waiting writes (and their bodies) pile up.
		wait := time.NewTimer(s.queueWait)
		defer wait.Stop()
		select {
		case s.ops <- o:
		case <-wait.C:
			s.closeMu.RUnlock()
			return store.ErrBusy
		case <-ctx.Done():
			s.closeMu.RUnlock()
			return ctx.Err()
		}
	}
	s.closeMu.RUnlock()
	<-o.done
	return o.err
}

func (s *engine) Snapshot(at store.Path) (store.Event, error) {
	var ev store.Event
	err := s.view(func(tx *bbolt.Tx) error {
		data, _, err := readAt(tx, at)
		ev = store.Event{Rev: tx.Bucket(bucketMeta).Sequence(), Path: "/", Data: data}
		return err
	})
	return ev, err
}

// ChangesAfter reads the room's log in one short transaction, at most
// about a page of catchUpPageBytes.
func (s *engine) ChangesAfter(room string, after uint64, limit int) (changes []*store.Change, provable, more bool, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		rooms := tx.Bucket(bucketRooms)
		meta, ok, err := readMeta(rooms, room)
		if err != nil {
			return err
		}
		if !ok || after < meta.floor || after > tx.Bucket(bucketMeta).Sequence() {
			return nil
		}
		provable = true
		prefix := logPrefix(room)
		c := rooms.Cursor()
		size := 0
		for k, v := c.Seek(logKey(room, after+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(changes) == limit || size > catchUpPageBytes {
				more = true
				break
			}
			ch, err := store.DecodeChange(room, binary.BigEndian.Uint64(k[len(prefix):]), v)
			if err != nil {
				return err
			}
			changes = append(changes, ch)
			size += len(v)
		}
		return nil
	})
	return changes, provable, more, err
}
