package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// boltBackend keeps rooms in one bbolt file, written by one goroutine.
type boltBackend struct {
	db      *bolt.DB
	opts    Options // static after Open
	started time.Time
	hub     *hub

	ops        chan *op      // to the writer goroutine, bounded by Options.WriteQueue
	queueWait  time.Duration // how long a write waits for room in ops
	pushIDs    pushIDs       // owned by the writer goroutine
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

// Open opens or creates the database at path and starts its writer and TTL
// sweeper. A file locked by another process fails with ErrLocked after
// Options.OpenTimeout.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        opts.OpenTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		MaxSize:        opts.MaxSize,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	h := newHub(opts.WatchQueue)
	s := &boltBackend{
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
	st := &Store{opts: opts, hub: h, be: s}
	h.be = s
	return st, nil
}

// init creates the buckets and loads the counters.
func (s *boltBackend) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
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

// close stops the sweeper and the writer (queued writes are committed
// first) and closes the file.
func (s *boltBackend) close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return ErrClosed
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

func (s *boltBackend) read(at Path) (Value, error) {
	var v Value
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		v.Data, v.Rev, err = readAt(tx, at)
		return err
	})
	return v, err
}

func (s *boltBackend) stats() Stats {
	return Stats{Revision: s.rev.Load(), Rooms: s.rooms.Load(), Expired: s.expired.Load()}
}

// Each room's changes reach the hub from the writer: nothing to set up.
func (s *boltBackend) watched(string) (func(), error) { return nil, nil }

// submit hands a write to the writer and waits for its commit. Once queued,
// a write is committed or failed whatever happens to ctx.
func (s *boltBackend) submit(ctx context.Context, o *op) (Result, error) {
	o.done = make(chan struct{})
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return Result{}, ErrClosed
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
			return Result{}, ErrBusy
		case <-ctx.Done():
			s.closeMu.RUnlock()
			return Result{}, ctx.Err()
		}
	}
	s.closeMu.RUnlock()
	<-o.done
	return o.res, o.err
}

func (s *boltBackend) snapshot(at Path) (Event, error) {
	var ev Event
	err := s.db.View(func(tx *bolt.Tx) error {
		data, _, err := readAt(tx, at)
		ev = Event{Rev: tx.Bucket(bucketMeta).Sequence(), Path: "/", Data: data}
		return err
	})
	return ev, err
}

// changesAfter reads the room's log in one short transaction.
func (s *boltBackend) changesAfter(room string, after uint64, limit int) (changes []*change, provable, more bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
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
			ch, err := decodeChange(room, binary.BigEndian.Uint64(k[len(prefix):]), v)
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
