// Package bolt is the bbolt engine of the store: every room in one file,
// written by one goroutine in group commits (see store/doc.go for what the
// store guarantees, and records.go for the layout).
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

	rev     atomic.Uint64 // last committed revision
	rooms   atomic.Int64  // rooms stored
	expired atomic.Uint64 // rooms deleted by the TTL sweep since Open
}

// maxGroup caps how many queued writes share one commit.
const maxGroup = 1000

// catchUpPageBytes bounds the log one ChangesAfter reads, so no read
// transaction stays open long.
const catchUpPageBytes = 1 << 20

// Open opens or creates the database at path and starts its writer and TTL
// sweeper. A file locked by another process fails with ErrLocked after
// Options.OpenTimeout.
func Open(path string, opts store.Options) (*store.Store, error) {
	return store.New(opts, func(h *store.Hub, opts store.Options) (store.Engine, error) {
		return open(path, h, opts)
	})
}

func open(path string, h *store.Hub, opts store.Options) (*engine, error) {
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
		db: db, opts: opts, started: time.Now(), hub: h,
		ops:        make(chan *op, opts.WriteQueue),
		queueWait:  time.Second,
		writerDone: make(chan struct{}),
		// A full queue makes the writer wait: publishing is memory-only and
		// never waits on a watcher.
		committed:     make(chan committedGroup, 256),
		publisherDone: make(chan struct{}),
		sweeperDone:   make(chan struct{}),
	}
	if err := s.init(); err != nil {
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

// init creates the buckets and loads the counters.
func (s *engine) init() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketRooms, bucketExpiry} {
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
	return s.db.Close()
}

// view runs a read-only transaction; a closed database is ErrClosed.
func (s *engine) view(fn func(tx *bbolt.Tx) error) error {
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
