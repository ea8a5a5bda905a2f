package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Limits are the per-value and per-room quotas. Zero fields take defaults.
type Limits struct {
	MaxValueBytes int // one written value (a request body): 64 KiB
	MaxKeys       int // keys per room: 256
	MaxChildren   int // children per key: 1000
	MaxRoomBytes  int // stored bytes per room, 32 bytes counted per record: 1 MiB
	MaxLogEntries int // change-log entries kept per room: 1000
	MaxLogBytes   int // change-log bytes kept per room: 4 MiB
}

// Options configure a Store. Zero fields take defaults.
type Options struct {
	RoomTTL     time.Duration // a room is deleted this long after its last write or watcher: 1 h
	Limits      Limits
	MaxSize     int           // database file size limit in bytes: 1 GiB
	OpenTimeout time.Duration // how long to wait for another process's lock: 5 s
	// WatchQueue bounds the changes queued for one watcher before it is
	// evicted with ErrEvicted: 1024.
	WatchQueue int
	Logger     *slog.Logger
	// OnCommit, if set, is called by the writer after each group commit.
	OnCommit func(ops int, elapsed time.Duration, err error)
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Limits.MaxValueBytes, 64<<10)
	def(&o.Limits.MaxKeys, 256)
	def(&o.Limits.MaxChildren, 1000)
	def(&o.Limits.MaxRoomBytes, 1<<20)
	def(&o.Limits.MaxLogEntries, 1000)
	def(&o.Limits.MaxLogBytes, 4<<20)
	def(&o.MaxSize, 1<<30)
	def(&o.WatchQueue, 1024)
	if o.RoomTTL <= 0 {
		o.RoomTTL = time.Hour
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store is a set of rooms in one bbolt file. All methods are safe for
// concurrent use.
type Store struct {
	db      *bolt.DB
	opts    Options // static after Open
	started time.Time
	hub     *hub

	ops        chan *op      // to the writer goroutine
	pushIDs    pushIDs       // owned by the writer goroutine
	closeMu    sync.RWMutex  // guards closed against sends on ops
	closed     bool          // ops is closed
	writerDone chan struct{} // closed when the writer returned

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
	s := &Store{
		db: db, opts: opts, started: time.Now(),
		hub:         newHub(opts.WatchQueue),
		ops:         make(chan *op, maxGroup),
		writerDone:  make(chan struct{}),
		sweeperDone: make(chan struct{}),
	}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	go s.write()
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSweeper = cancel
	go s.sweep(ctx)
	return s, nil
}

// init creates the buckets and loads the counters.
func (s *Store) init() error {
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

// Close stops the sweeper and the writer (queued writes are committed first),
// ends every watcher with ErrClosed and closes the file.
func (s *Store) Close() error {
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
	s.hub.close()
	return s.db.Close()
}

// Value is a location's value with the revision of its last change; Rev is 0
// and Data "null" when nothing is stored there.
type Value struct {
	Data []byte
	Rev  uint64
}

// Get reads the value at a location.
func (s *Store) Get(at Path) (Value, error) {
	if err := at.check(); err != nil {
		return Value{}, err
	}
	var v Value
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		v.Data, v.Rev, err = readAt(tx, at)
		return err
	})
	if err != nil {
		return Value{}, fmt.Errorf("read %s: %w", at, err)
	}
	return v, nil
}

// Stats are counters for metrics.
type Stats struct {
	Revision uint64 // last committed revision
	Rooms    int64  // rooms stored
	Expired  uint64 // rooms deleted by the TTL sweep since Open
	Watchers int    // open watchers
}

// Stats reads the counters.
func (s *Store) Stats() Stats {
	return Stats{Revision: s.rev.Load(), Rooms: s.rooms.Load(), Expired: s.expired.Load(), Watchers: s.hub.count()}
}

// Cond is a write's precondition on its location's revision (If-Match).
// Set with Rev 0 requires that nothing is stored there (null_etag).
type Cond struct {
	Set bool
	Rev uint64
}

// Result is what a committed write reports.
type Result struct {
	Rev  uint64 // the write's revision
	ETag uint64 // the location's revision after the write; 0 when nothing is stored there
	// Value is the stored value at the location (PUT, DELETE) or the
	// normalized patch object (PATCH).
	Value []byte
	Name  string // the push id (POST)
}

// Put sets the value at a location (null deletes). A room takes an object or null.
func (s *Store) Put(ctx context.Context, at Path, body []byte, cond Cond) (Result, error) {
	o := &op{kind: opPut, at: at, cond: cond}
	if err := s.checkBody(body); err != nil {
		return Result{}, err
	}
	var err error
	switch at.Depth() {
	case 0:
		o.room, err = parseRoom(body)
	case 1:
		o.key, err = parseKey(body)
	default:
		o.child, err = parseChild(body)
	}
	if err != nil {
		return Result{}, err
	}
	return s.submit(ctx, o)
}

// Delete deletes the value at a location.
func (s *Store) Delete(ctx context.Context, at Path, cond Cond) (Result, error) {
	return s.submit(ctx, &op{kind: opPut, at: at, cond: cond})
}

// Push appends body as a new child of a key, named by a fresh push id.
func (s *Store) Push(ctx context.Context, at Path, body []byte, cond Cond) (Result, error) {
	if at.Depth() != 1 {
		return Result{}, fmt.Errorf("%w: push needs a key location", ErrInvalidPath)
	}
	if err := s.checkBody(body); err != nil {
		return Result{}, err
	}
	child, err := parseChild(body)
	if err != nil {
		return Result{}, err
	}
	return s.submit(ctx, &op{kind: opPush, at: at, cond: cond, child: child})
}

// Patch sets each member of body (a "key" or "key/child" of a room, a child
// of a key) in one revision.
func (s *Store) Patch(ctx context.Context, at Path, body []byte, cond Cond) (Result, error) {
	if err := s.checkBody(body); err != nil {
		return Result{}, err
	}
	members, obj, err := parsePatch(at, body)
	if err != nil {
		return Result{}, err
	}
	return s.submit(ctx, &op{kind: opPatch, at: at, cond: cond, members: members, patchJSON: obj})
}

func (s *Store) checkBody(body []byte) error {
	if n, limit := len(body), s.opts.Limits.MaxValueBytes; n > limit {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, n, limit)
	}
	return checkText(body)
}

// submit hands a write to the writer and waits for its commit. Once queued,
// a write is committed or failed whatever happens to ctx.
func (s *Store) submit(ctx context.Context, o *op) (Result, error) {
	if o.kind != opSweep {
		if err := o.at.check(); err != nil {
			return Result{}, err
		}
	}
	o.done = make(chan struct{})
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return Result{}, ErrClosed
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return Result{}, ctx.Err()
	}
	s.closeMu.RUnlock()
	<-o.done
	return o.res, o.err
}
