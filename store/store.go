package store

import (
	"context"
	"fmt"
	"log/slog"
	"time"
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
	// WriteQueue bounds the writes waiting for the bbolt writer: 1000. A
	// write that finds it full waits up to a second for room, then fails
	// with ErrBusy, so a stalled disk cannot make waiting writes pile up.
	WriteQueue int
	Logger     *slog.Logger
	// OnCommit, if set, is called by the engine after each commit (on
	// bbolt, each group commit), once its changes reached the hub.
	OnCommit func(ops int, elapsed time.Duration, err error)
}

// DefaultOptions are the defaults: what a zero field of Options means, and
// the defaults of sigbase serve's flags.
func DefaultOptions() Options {
	return Options{
		RoomTTL: time.Hour,
		Limits: Limits{
			MaxValueBytes: 64 << 10,
			MaxKeys:       256,
			MaxChildren:   1000,
			MaxRoomBytes:  1 << 20,
			MaxLogEntries: 1000,
			MaxLogBytes:   4 << 20,
		},
		MaxSize:     1 << 30,
		OpenTimeout: 5 * time.Second,
		WatchQueue:  1024,
		WriteQueue:  1000,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	def := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	def(&o.Limits.MaxValueBytes, d.Limits.MaxValueBytes)
	def(&o.Limits.MaxKeys, d.Limits.MaxKeys)
	def(&o.Limits.MaxChildren, d.Limits.MaxChildren)
	def(&o.Limits.MaxRoomBytes, d.Limits.MaxRoomBytes)
	def(&o.Limits.MaxLogEntries, d.Limits.MaxLogEntries)
	def(&o.Limits.MaxLogBytes, d.Limits.MaxLogBytes)
	def(&o.MaxSize, d.MaxSize)
	def(&o.WatchQueue, d.WatchQueue)
	def(&o.WriteQueue, d.WriteQueue)
	if o.RoomTTL <= 0 {
		o.RoomTTL = d.RoomTTL
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = d.OpenTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store is a set of rooms: the data model, quotas and watchers over an
// Engine that keeps them (store/bolt: a bbolt file; store/etcd: an etcd
// cluster). All methods are safe for concurrent use.
type Store struct {
	opts Options // static after opening
	hub  *Hub
	eng  Engine
}

// Engine is where rooms live: the seam between the model (this package)
// and a storage engine. An engine applies each Write with Room.Apply,
// durably and with a revision of its own, and hands committed changes to
// the Hub in revision order. Its methods are called concurrently.
type Engine interface {
	// Submit applies one write; it returns once the write is durable.
	Submit(ctx context.Context, w *Write) (Result, error)
	// Read is the value at a location with its revision (ETag).
	Read(at Path) (Value, error)
	// Snapshot is a put of "/" with the value at a location, whose Rev is
	// the (global) revision the read reflects.
	Snapshot(at Path) (Event, error)
	// ChangesAfter reads up to limit changes of a room after a revision.
	// It reports provable=false when it cannot show that it has them all,
	// and more=true when it stopped at the limit.
	ChangesAfter(room string, after uint64, limit int) (changes []*Change, provable, more bool, err error)
	// Watched says a room got its first watcher on this node. It returns
	// once changes committed from now on reach the hub, and a stop to call
	// when the room's last watcher left (nil: nothing to stop).
	Watched(room string) (stop func(), err error)
	Stats() Stats
	// Close commits what is queued and releases the engine.
	Close() error

	// The records of onDisconnect sessions (see Store.SaveDisconnect).
	SaveDisconnect(room, session string, patch []byte, grace time.Duration) error
	ReleaseDisconnect(room, session string)
	ClaimDisconnect(room, session string) (bool, error)
	DropDisconnect(room, session string) error
	Disconnects() ([]DisconnectRecord, error)
}

// New opens a store on the engine that open returns; open gets the hub
// for committed changes and the options with their defaults filled in.
func New(opts Options, open func(*Hub, Options) (Engine, error)) (*Store, error) {
	opts = opts.withDefaults()
	h := newHub(opts.WatchQueue)
	eng, err := open(h, opts)
	if err != nil {
		return nil, err
	}
	h.eng = eng
	return &Store{opts: opts, hub: h, eng: eng}, nil
}

// Close ends every watcher with ErrClosed and closes the engine; writes
// already queued are committed first.
func (s *Store) Close() error {
	if err := s.eng.Close(); err != nil {
		return err
	}
	s.hub.close()
	return nil
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
	v, err := s.eng.Read(at)
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
	st := s.eng.Stats()
	st.Watchers = s.hub.count()
	return st
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

	present bool // something is stored at the location: ETag is Rev (At)
}

// Put sets the value at a location (null deletes). A room takes an object or null.
func (s *Store) Put(ctx context.Context, at Path, body []byte, cond Cond) (Result, error) {
	o, err := s.putOp(at, body, cond)
	if err != nil {
		return Result{}, err
	}
	return s.submit(ctx, o)
}

// CheckPut reports whether Put would take body at the location, writing
// nothing: for writes registered now and made later (onDisconnect).
func (s *Store) CheckPut(at Path, body []byte) error {
	if err := at.check(); err != nil {
		return err
	}
	_, err := s.putOp(at, body, Cond{})
	return err
}

func (s *Store) putOp(at Path, body []byte, cond Cond) (*Write, error) {
	o := &Write{kind: writePut, at: at, cond: cond}
	if err := s.checkBody(body); err != nil {
		return nil, err
	}
	var err error
	if o.serverValues, err = checkDotNames(body); err != nil {
		return nil, err
	}
	switch at.Depth() {
	case 0:
		o.room, err = parseRoom(body)
	case 1:
		o.key, err = parseKey(body)
	default:
		o.child, err = parseChild(body)
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Delete deletes the value at a location.
func (s *Store) Delete(ctx context.Context, at Path, cond Cond) (Result, error) {
	return s.submit(ctx, &Write{kind: writePut, at: at, cond: cond})
}

// Push appends body as a new child of a key, named by a fresh push id.
func (s *Store) Push(ctx context.Context, at Path, body []byte, cond Cond) (Result, error) {
	if at.Depth() != 1 {
		return Result{}, fmt.Errorf("%w: push needs a key location", ErrInvalidPath)
	}
	if err := s.checkBody(body); err != nil {
		return Result{}, err
	}
	sv, err := checkDotNames(body)
	if err != nil {
		return Result{}, err
	}
	child, err := parseChild(body)
	if err != nil {
		return Result{}, err
	}
	return s.submit(ctx, &Write{kind: writePush, at: at, cond: cond, child: child, serverValues: sv})
}

// Patch sets each member of body (a "key" or "key/child" of a room, a child
// of a key) in one revision.
func (s *Store) Patch(ctx context.Context, at Path, body []byte, cond Cond) (Result, error) {
	if err := s.checkBody(body); err != nil {
		return Result{}, err
	}
	sv, err := checkDotNames(body)
	if err != nil {
		return Result{}, err
	}
	members, obj, err := parsePatch(at, body)
	if err != nil {
		return Result{}, err
	}
	return s.submit(ctx, &Write{kind: writePatch, at: at, cond: cond, members: members, patchJSON: obj, serverValues: sv})
}

func (s *Store) checkBody(body []byte) error {
	if err := s.CheckValueSize(int64(len(body))); err != nil {
		return err
	}
	return checkText(body)
}

// MaxValueBytes is the largest value one write may carry: the body limit.
func (s *Store) MaxValueBytes() int64 { return int64(s.opts.Limits.MaxValueBytes) }

// CheckValueSize refuses a written value of n bytes over MaxValueBytes, with
// ErrValueTooLarge: the one place that limit is enforced, also for the HTTP
// layer, which checks a body's Content-Length before reading it.
func (s *Store) CheckValueSize(n int64) error {
	if limit := s.MaxValueBytes(); n > limit {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, n, limit)
	}
	return nil
}

// submit validates a write's location and hands it to the engine.
func (s *Store) submit(ctx context.Context, w *Write) (Result, error) {
	if err := w.at.check(); err != nil {
		return Result{}, err
	}
	return s.eng.Submit(ctx, w)
}
