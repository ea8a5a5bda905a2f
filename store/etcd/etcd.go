// Package etcd is the etcd engine of the store: rooms in an etcd cluster
// that several sigbase nodes share (docs/SCALING.md).
//
// It keeps each room as two etcd keys under a prefix:
//
//	<prefix>rooms/<room>    the room's records (room.go)
//	<prefix>changes/<room>  the room's last change; its etcd history is the
//	                        room's change log
//
// Every write is one etcd transaction, guarded by the room value's
// ModRevision; writes to different rooms made at the same time share one
// transaction (batch.go), each with its own guard, and a write's revision is
// the etcd revision it commits at and its slot in that transaction
// (room.go). Both keys hang on the room's lease, whose TTL is
// the room TTL: each write refreshes it, a node keeps it alive while it has
// watchers of the room, and when it runs out etcd deletes the room. Each
// node watches the change key of every room it has watchers for and fans the
// changes out through the hub; a watcher resumes from etcd's history until
// it is compacted, then gets a snapshot.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigbase/sigbase/store"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// engine keeps rooms in etcd.
type engine struct {
	disc   etcdDisconnects // onDisconnect records under leases (disconnect.go)
	cli    *clientv3.Client
	prefix string
	opts   store.Options
	hub    *store.Hub
	log    *slog.Logger

	ctx    context.Context // ends feeds and keepers at close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	roomLocks [256]sync.Mutex // writes to one room from this node go one at a time
	cache     roomCache       // the rooms this node wrote last, to write without a read first
	batch     *batcher        // writes' transactions, sent together (batch.go)

	pushMu  sync.Mutex
	pushIDs store.PushIDs // guarded by pushMu

	touchMu sync.Mutex
	touched map[int64]time.Time // lease → when this node last refreshed it

	rev   atomic.Uint64 // highest revision seen (room.go)
	rooms atomic.Int64  // rooms stored, as last counted
	// countedAt is when rooms was last counted (unix ns): stats counts at
	// most once per roomCountTTL, so a scrape is one round trip at most;
	// this node's own writes that create or delete a room reset it.
	countedAt atomic.Int64
}

// roomCountTTL is how stale the room count may be.
const roomCountTTL = time.Second

// Options say where the engine keeps its rooms.
type Options struct {
	Endpoints   []string      // etcd client URLs
	Prefix      string        // key prefix: "/sigbase/"
	DialTimeout time.Duration // 5 s
}

// opTimeout bounds one write, read or catch-up against etcd.
const opTimeout = 10 * time.Second

// A member's connection that answers no ping for keepAliveTime +
// keepAliveTimeout is closed.
const (
	keepAliveTime    = 10 * time.Second
	keepAliveTimeout = 3 * time.Second
)

// Open opens a store on an etcd cluster. Several sigbase nodes may share
// one prefix: any node serves any room.
func Open(eo Options, opts store.Options) (*store.Store, error) {
	var e *engine
	st, err := store.New(opts, func(h *store.Hub, opts store.Options) (store.Engine, error) {
		var err error
		e, err = open(eo, h, opts)
		return e, err
	})
	if err != nil {
		return nil, err
	}
	e.wg.Add(2)
	go e.background()
	go e.watchDisconnects(func(room string, patch []byte) {
		ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
		defer cancel()
		if _, err := st.Patch(ctx, store.Path{Room: room}, patch, store.Cond{}); err != nil {
			e.log.Warn("etcd: onDisconnect write failed", "room", room, "err", err)
		}
	})
	return st, nil
}

func open(eo Options, h *store.Hub, opts store.Options) (*engine, error) {
	if eo.Prefix == "" {
		eo.Prefix = "/sigbase/"
	}
	if eo.DialTimeout <= 0 {
		eo.DialTimeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: eo.Endpoints, DialTimeout: eo.DialTimeout,
		// The client's own logging would bypass ours; its failures reach us
		// as errors.
		Logger: zap.NewNop(),
		// Ping each member's connection, so that one that hangs (a frozen
		// machine, a network partition: no TCP reset) is dropped and its
		// requests and watches move to the other members. 10 s is gRPC's
		// shortest interval; etcd accepts pings every 5 s.
		DialKeepAliveTime: keepAliveTime, DialKeepAliveTimeout: keepAliveTimeout, PermitWithoutStream: true,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", eo.Endpoints, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), eo.DialTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, eo.Prefix+"rooms/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd %v: %w", eo.Endpoints, err)
	}
	e := &engine{cli: cli, prefix: eo.Prefix, opts: opts, hub: h, log: opts.Logger, touched: make(map[int64]time.Time)}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.batch = newBatcher(cli)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.batch.run(e.ctx)
	}()
	e.countRooms()
	return e, nil
}

func (e *engine) roomKey(room string) string   { return e.prefix + "rooms/" + room }
func (e *engine) changeKey(room string) string { return e.prefix + "changes/" + room }

func (e *engine) lockRoom(room string) func() {
	h := fnv.New32a()
	h.Write([]byte(room))
	mu := &e.roomLocks[h.Sum32()%uint32(len(e.roomLocks))]
	mu.Lock()
	return mu.Unlock
}

// loaded is a room as read from etcd: decoded, its value as stored (nil
// when absent), its lease, its value's ModRevision, and the etcd revision
// the read reflects.
type loaded struct {
	room         *store.Room
	value        []byte
	lease        int64
	modRev, head int64
}

// load reads a room; an absent one is an empty room.
func (e *engine) load(ctx context.Context, room string) (loaded, error) {
	resp, err := e.cli.Get(ctx, e.roomKey(room))
	if err != nil {
		return loaded{}, etcdError(err)
	}
	return e.loadedOf(resp.Kvs, resp.Header.Revision)
}

// loadedOf decodes a room read at etcd revision head: kvs holds its value,
// or nothing when the room is absent.
func (e *engine) loadedOf(kvs []*mvccpb.KeyValue, head int64) (loaded, error) {
	e.seen(headRev(head))
	l := loaded{head: head}
	if len(kvs) == 0 {
		l.room = store.NewRoom(0, 0, 0)
		return l, nil
	}
	kv := kvs[0]
	l.value, l.modRev = kv.Value, kv.ModRevision
	var err error
	l.room, l.lease, err = decodeRoom(kv.Value, l.modRev)
	return l, err
}

// remember keeps a loaded room as this node's copy of it.
func (e *engine) remember(name string, l loaded) {
	e.cache.put(name, l.value, l.lease, l.modRev, l.head)
}

func (e *engine) Submit(ctx context.Context, w *store.Write) (store.Result, error) {
	if e.ctx.Err() != nil {
		return store.Result{}, store.ErrClosed
	}
	start := time.Now()
	defer e.lockRoom(w.Room())()
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	e.pushMu.Lock()
	w.NamePush(&e.pushIDs, time.Now())
	e.pushMu.Unlock()
	for attempt := 0; ; attempt++ {
		// The first attempt starts from this node's copy of the room, if it
		// has one; the transaction's guard catches a copy that is stale.
		res, again, err := e.try(ctx, w, attempt == 0)
		if !again || attempt == 100 {
			if again {
				err = fmt.Errorf("%w: room %s kept changing under write", store.ErrUnavailable, w.Room())
			}
			if e.opts.OnCommit != nil {
				e.opts.OnCommit(1, time.Since(start), err)
			}
			return res, err
		}
	}
}

// try runs one optimistic attempt; again means another node wrote the room
// in between, or that an outcome reached from the cached copy of the room
// (cached) without a transaction must be confirmed from etcd.
func (e *engine) try(ctx context.Context, w *store.Write, cached bool) (res store.Result, again bool, err error) {
	name := w.Room()
	var room *store.Room
	var lease int64
	var modRev, head int64
	if cached {
		room, lease, modRev, cached = e.cache.get(name)
	}
	if !cached {
		l, err := e.load(ctx, name)
		if err != nil {
			return store.Result{}, false, err
		}
		room, lease, modRev, head = l.room, l.lease, l.modRev, l.head
		e.remember(name, l)
	}
	exists := room.Exists()
	// Revision 0: the keys it changes read as the value's ModRevision.
	c, res, err := room.Apply(w, e.opts.Limits, 0)
	if err != nil {
		if cached {
			return store.Result{}, true, nil // a refusal must be about the room as it is
		}
		return store.Result{}, false, err
	}
	gone := room.Keys() == 0
	if gone && !exists {
		if cached {
			return store.Result{}, true, nil
		}
		// Nothing was stored and nothing is: no transaction, no revision.
		return res.At(headRev(head)), false, nil
	}
	p := &proposal{
		guard:   clientv3.Compare(clientv3.ModRevision(e.roomKey(name)), "=", modRev),
		roomKey: e.roomKey(name), changeKey: e.changeKey(name),
	}
	granted, newLease := false, lease
	if !gone { // else the room is gone: its change key's deletion is the change
		if !exists {
			l, err := e.cli.Grant(ctx, e.ttlSeconds())
			if err != nil {
				return store.Result{}, false, etcdError(err)
			}
			newLease, granted = int64(l.ID), true
			e.touchMu.Lock()
			e.touched[newLease] = time.Now() // granted with its full TTL
			e.touchMu.Unlock()
		}
		p.room, p.change, p.lease = encodeRoom(newLease, room), encodeChange(c), clientv3.LeaseID(newLease)
	}
	err = e.batch.commit(ctx, p)
	if err == nil {
		err = p.err
	}
	if err != nil || !p.ok {
		e.cache.drop(name)
		if granted {
			go e.revoke(newLease)
		}
		if err != nil {
			return store.Result{}, false, etcdError(err)
		}
		return store.Result{}, true, nil
	}
	rev := p.rev
	e.seen(rev)
	if gone {
		e.cache.drop(name)
	} else {
		e.cache.put(name, p.room, newLease, etcdRevOf(rev), etcdRevOf(rev))
	}
	if !exists || gone {
		e.countedAt.Store(0) // a room came or went: count afresh at the next scrape
	}
	if gone {
		go e.revoke(lease)
	} else if !granted {
		e.touch(ctx, newLease)
	}
	return res.At(rev), false, nil
}

func (e *engine) ttlSeconds() int64 {
	return max(1, int64(math.Ceil(e.opts.RoomTTL.Seconds())))
}

// touch refreshes a lease to its full TTL, at most every eighth of it. It
// reports a lease etcd no longer has (the room expired or was deleted).
func (e *engine) touch(ctx context.Context, lease int64) (gone bool) {
	e.touchMu.Lock()
	last, ok := e.touched[lease]
	due := !ok || time.Since(last) > e.opts.RoomTTL/8
	if due {
		e.touched[lease] = time.Now()
	}
	e.touchMu.Unlock()
	if !due {
		return false
	}
	_, err := e.cli.KeepAliveOnce(ctx, clientv3.LeaseID(lease))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return true
	}
	if err != nil {
		e.log.Warn("etcd: refreshing a room's lease failed", "err", err)
	}
	return false
}

func (e *engine) revoke(lease int64) {
	if lease == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	_, _ = e.cli.Revoke(ctx, clientv3.LeaseID(lease))
}

func (e *engine) Read(at store.Path) (store.Value, error) {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	l, err := e.load(ctx, at.Room)
	if err != nil {
		return store.Value{}, err
	}
	data, rev := l.room.ValueAt(at)
	return store.Value{Data: data, Rev: rev}, nil
}

func (e *engine) Snapshot(at store.Path) (store.Event, error) {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	l, err := e.load(ctx, at.Room)
	if err != nil {
		return store.Event{}, err
	}
	e.remember(at.Room, l) // a watched room is likely to be written next
	data, _ := l.room.ValueAt(at)
	return store.Event{Rev: max(headRev(l.head), l.room.Rev()), Path: "/", Data: data}, nil
}

// ChangesAfter replays the room's change key from etcd's history. The
// history is complete unless etcd compacted it past the resume point.
func (e *engine) ChangesAfter(room string, after uint64, limit int) (changes []*store.Change, provable, more bool, err error) {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.changeKey(room))
	if err != nil {
		return nil, false, false, etcdError(err)
	}
	e.seen(headRev(resp.Header.Revision))
	if after > lastRev(resp.Header.Revision) || len(resp.Kvs) == 0 {
		return nil, false, false, nil // in the future, or no room to replay into
	}
	lastChange, err := e.changeOf(room, &clientv3.Event{Type: mvccpb.PUT, Kv: resp.Kvs[0]})
	if err != nil {
		return nil, false, false, err
	}
	last := lastChange.Rev()
	if last <= after {
		return nil, true, false, nil
	}
	// From the etcd revision of after itself: a later slot of it may be this
	// room's.
	for wr := range e.cli.Watch(ctx, e.changeKey(room), clientv3.WithRev(max(1, etcdRevOf(after)))) {
		if wr.CompactRevision != 0 {
			return nil, false, false, nil // compacted past the resume point
		}
		if err := wr.Err(); err != nil {
			return nil, false, false, etcdError(err)
		}
		for _, ev := range wr.Events {
			if len(changes) == limit {
				return changes, true, true, nil
			}
			c, err := e.changeOf(room, ev)
			if err != nil {
				return nil, false, false, err
			}
			if c.Rev() <= after {
				continue
			}
			changes = append(changes, c)
			if c.Rev() >= last {
				return changes, true, false, nil
			}
		}
	}
	return nil, false, false, fmt.Errorf("%w: replaying %s: %v", store.ErrUnavailable, room, ctx.Err())
}

// changeOf turns a change-key event into a change: a put carries one, a
// delete is the room's end.
func (e *engine) changeOf(room string, ev *clientv3.Event) (*store.Change, error) {
	if ev.Type == mvccpb.DELETE {
		return store.RoomGone(room, revAt(ev.Kv.ModRevision, 0)), nil // a deletion is alone in its transaction
	}
	return decodeChange(room, ev.Kv.Value, ev.Kv.ModRevision)
}

// Watched starts the room's feed from the current revision on, and a keeper
// that holds the room's lease while this node has watchers of it. One
// transaction reads where the feed starts and the room, which becomes this
// node's copy: the keeper takes the lease from it, and a first write to the
// room needs no read.
func (e *engine) Watched(room string) (func(), error) {
	ctx, cancel := context.WithCancel(e.ctx)
	gctx, gcancel := context.WithTimeout(ctx, opTimeout)
	resp, err := e.cli.Txn(gctx).Then(clientv3.OpGet(e.changeKey(room)), clientv3.OpGet(e.roomKey(room))).Commit()
	gcancel()
	if err != nil {
		cancel()
		return nil, etcdError(err)
	}
	head := resp.Header.Revision
	if l, err := e.loadedOf(resp.Responses[1].GetResponseRange().Kvs, head); err == nil {
		e.remember(room, l)
	}
	// fed is the etcd revision of the last change the feed delivered: a
	// copy of the room older than that may have the wrong lease.
	fed := new(atomic.Int64)
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		fed.Store(kvs[0].ModRevision)
	}
	e.wg.Add(2)
	go e.feed(ctx, room, head+1, fed)
	go e.keep(ctx, room, fed)
	return func() {
		cancel()
		e.refreshRoomLease(room, fed.Load()) // the TTL runs from the last watcher's leaving
	}, nil
}

// feed publishes the room's changes from revision `from` on, and records
// in fed the etcd revision of the last. A watch that
// ends (the member lost its leader, the connection broke) restarts where it
// stopped, so the room's watchers miss nothing and stay connected. A watch
// that etcd compacted past has lost changes: the room's watchers are evicted,
// to resume from their last event ids (a snapshot when that is too old), and
// the feed restarts at the compaction revision, which is at or before
// anything a watcher registering from now on reads.
func (e *engine) feed(ctx context.Context, room string, from int64, fed *atomic.Int64) {
	defer e.wg.Done()
	for {
		wch := e.cli.Watch(clientv3.WithRequireLeader(ctx), e.changeKey(room), clientv3.WithRev(from))
		for wr := range wch {
			if wr.CompactRevision != 0 {
				e.hub.EvictRoom(room)
				from = wr.CompactRevision
				break
			}
			if wr.Err() != nil {
				break
			}
			var changes []*store.Change
			for _, ev := range wr.Events {
				from = ev.Kv.ModRevision + 1
				fed.Store(ev.Kv.ModRevision)
				c, err := e.changeOf(room, ev)
				if err != nil {
					e.log.Error("etcd: a change that does not decode", "room", room, "err", err)
					continue
				}
				changes = append(changes, c)
			}
			e.hub.Publish(changes)
			e.seen(headRev(wr.Header.Revision))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond): // a watch that keeps failing retries 4 times a second
		}
	}
}

// keep refreshes the room's lease while the node has watchers of it.
func (e *engine) keep(ctx context.Context, room string, fed *atomic.Int64) {
	defer e.wg.Done()
	tick := time.NewTicker(min(time.Minute, max(e.opts.RoomTTL/3, 200*time.Millisecond)))
	defer tick.Stop()
	for {
		e.refreshRoomLease(room, fed.Load())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// refreshRoomLease refreshes the room's lease as a write does (touch). The
// lease comes from this node's copy of the room when that copy is no older
// than the last change the room's feed delivered (etcd revision fed), so
// that it is the room's current lease; else from etcd.
func (e *engine) refreshRoomLease(room string, fed int64) {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	lease, cached := e.cache.lease(room, fed)
	for {
		if !cached {
			l, err := e.load(ctx, room)
			if err != nil {
				return
			}
			e.remember(room, l)
			lease = l.lease
		}
		if lease == 0 || !e.touch(ctx, lease) || !cached {
			return
		}
		cached = false // the copy's lease is gone: read the room's
	}
}

// background forgets old lease refreshes.
func (e *engine) background() {
	defer e.wg.Done()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
		e.touchMu.Lock()
		for lease, at := range e.touched {
			if time.Since(at) > e.opts.RoomTTL {
				delete(e.touched, lease)
			}
		}
		e.touchMu.Unlock()
	}
}

func (e *engine) countRooms() {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	if resp, err := e.cli.Get(ctx, e.prefix+"rooms/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err == nil {
		e.rooms.Store(resp.Count)
		e.seen(headRev(resp.Header.Revision))
	}
	e.countedAt.Store(time.Now().UnixNano())
}

func (e *engine) seen(rev uint64) {
	for {
		cur := e.rev.Load()
		if rev <= cur || e.rev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// Stats counts the rooms in etcd (one small request) unless it did within
// roomCountTTL. Expired stays 0: etcd, not this node, ends rooms when their
// leases run out.
func (e *engine) Stats() store.Stats {
	if time.Since(time.Unix(0, e.countedAt.Load())) >= roomCountTTL {
		e.countRooms()
	}
	return store.Stats{Revision: e.rev.Load(), Rooms: e.rooms.Load()}
}

func (e *engine) Close() error {
	if e.ctx.Err() != nil {
		return store.ErrClosed
	}
	e.cancel()
	e.wg.Wait()
	return e.cli.Close()
}

// etcdError maps etcd's errors onto the store's.
func etcdError(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrNoSpace) || strings.Contains(err.Error(), "database space exceeded"):
		return fmt.Errorf("%w: %v", store.ErrDatabaseFull, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge) || strings.Contains(err.Error(), "request is too large"):
		// The room's one value is over etcd's --max-request-bytes: a quota,
		// not an outage, so retrying would not help.
		return fmt.Errorf("%w: over etcd's request size limit: %v", store.ErrRoomTooLarge, err)
	case errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
}
