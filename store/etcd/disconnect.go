package etcd

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigbase/sigbase/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// On etcd a session's record is one key under a lease that the node serving
// the session's stream keeps alive. When the stream ends the node stops
// refreshing it and, after the grace period, claims and applies the record;
// when the node dies the lease runs out, etcd deletes the key, and every
// node sees the deletion: the one that claims it applies it. A claim is a
// marker key named after the record's revision, created at most once, so a
// record is applied once whoever gets there first. A stream of the session
// back on any node before then writes the record again, under its own
// lease, which makes every older claim fail.

// etcdDisconnects is this node's view of the sessions it serves.
type etcdDisconnects struct {
	mu   sync.Mutex
	held map[string]*heldSession
}

type heldSession struct {
	lease clientv3.LeaseID
	rev   int64              // the ModRevision of this node's write of the record
	stop  context.CancelFunc // ends the lease's keep-alive
}

// markerTTL keeps claim markers long enough for every node to see the
// deletion they guard.
const markerTTL = 60

func (e *engine) disconnectPrefix() string { return e.prefix + "disconnect/" }

func (e *engine) disconnectKey(room, session string) string {
	return e.disconnectPrefix() + room + "/" + session
}

func (e *engine) claimKey(room, session string, rev int64) string {
	return e.prefix + "disconnected/" + room + "/" + session + "/" + strconv.FormatInt(rev, 10)
}

func (e *engine) SaveDisconnect(room, session string, patch []byte, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	// The lease outlives the grace period, so the node serving the session
	// claims first when it is alive; when it is not, the lease runs out.
	// Keep-alives refresh it every third of its TTL, so when the stream ends
	// at least two thirds are left: 1.5 × grace + 2 s leaves grace + 1 s.
	ttl := int64(math.Ceil((grace*3/2 + 2*time.Second).Seconds()))
	lease, err := e.cli.Grant(ctx, ttl)
	if err != nil {
		return etcdError(err)
	}
	resp, err := e.cli.Put(ctx, e.disconnectKey(room, session), string(patch), clientv3.WithLease(lease.ID))
	if err != nil {
		go e.revoke(int64(lease.ID))
		return etcdError(err)
	}
	kctx, stop := context.WithCancel(e.ctx)
	alive, err := e.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		stop()
		return etcdError(err)
	}
	go func() {
		for range alive { // drained until stop or the lease is gone
		}
	}()
	k := room + "/" + session
	e.disc.mu.Lock()
	if e.disc.held == nil {
		e.disc.held = map[string]*heldSession{}
	}
	old := e.disc.held[k]
	e.disc.held[k] = &heldSession{lease: lease.ID, rev: resp.Header.Revision, stop: stop}
	e.disc.mu.Unlock()
	if old != nil {
		old.stop()
		go e.revoke(int64(old.lease)) // it holds nothing now
	}
	return nil
}

func (e *engine) ReleaseDisconnect(room, session string) {
	e.disc.mu.Lock()
	defer e.disc.mu.Unlock()
	if h := e.disc.held[room+"/"+session]; h != nil {
		h.stop()
	}
}

func (e *engine) takeHeld(room, session string) *heldSession {
	e.disc.mu.Lock()
	defer e.disc.mu.Unlock()
	k := room + "/" + session
	h := e.disc.held[k]
	delete(e.disc.held, k)
	if h != nil {
		h.stop()
	}
	return h
}

// claimDisconnect deletes this node's record with its claim marker, if the
// record is still the one this node wrote.
func (e *engine) ClaimDisconnect(room, session string) (bool, error) {
	h := e.takeHeld(room, session)
	if h == nil {
		return false, nil
	}
	defer func() { go e.revoke(int64(h.lease)) }()
	return e.claimDeleting(room, session, h.rev)
}

func (e *engine) claimDeleting(room, session string, rev int64) (bool, error) {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	marker, err := e.cli.Grant(ctx, markerTTL)
	if err != nil {
		return false, etcdError(err)
	}
	key := e.disconnectKey(room, session)
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key), clientv3.OpPut(e.claimKey(room, session, rev), "", clientv3.WithLease(marker.ID))).
		Commit()
	if err != nil {
		return false, etcdError(err)
	}
	return resp.Succeeded, nil
}

func (e *engine) DropDisconnect(room, session string) error {
	if h := e.takeHeld(room, session); h != nil {
		defer func() { go e.revoke(int64(h.lease)) }()
	}
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	resp, err := e.cli.Get(ctx, e.disconnectKey(room, session))
	cancel()
	if err != nil {
		return etcdError(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	_, err = e.claimDeleting(room, session, resp.Kvs[0].ModRevision)
	return err
}

// disconnects is empty on etcd: a record is applied by whichever node
// claims it when its lease runs out (watchDisconnects), restarts or not.
func (e *engine) Disconnects() ([]store.DisconnectRecord, error) { return nil, nil }

// watchDisconnects applies the records whose leases ran out: their nodes
// died (or lost etcd) with the sessions' streams open or in their grace.
func (e *engine) watchDisconnects(apply func(room string, patch []byte)) {
	defer e.wg.Done()
	for e.ctx.Err() == nil {
		ch := e.cli.Watch(clientv3.WithRequireLeader(e.ctx), e.disconnectPrefix(), clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithFilterPut())
		for resp := range ch {
			for _, ev := range resp.Events {
				if ev.PrevKv == nil {
					continue
				}
				room, session, ok := strings.Cut(strings.TrimPrefix(string(ev.PrevKv.Key), e.disconnectPrefix()), "/")
				if !ok {
					continue
				}
				go e.claimExpired(room, session, ev.PrevKv.ModRevision, ev.PrevKv.Value, apply)
			}
		}
		select {
		case <-e.ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// claimExpired creates the claim marker of a deleted record; only its
// creator applies the record.
func (e *engine) claimExpired(room, session string, rev int64, patch []byte, apply func(string, []byte)) {
	ctx, cancel := context.WithTimeout(e.ctx, opTimeout)
	defer cancel()
	marker, err := e.cli.Grant(ctx, markerTTL)
	if err != nil {
		return
	}
	claim := e.claimKey(room, session, rev)
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(claim), "=", 0)).
		Then(clientv3.OpPut(claim, "", clientv3.WithLease(marker.ID))).
		Commit()
	if err != nil || !resp.Succeeded {
		go e.revoke(int64(marker.ID))
		return
	}
	e.log.Info("etcd: applying the onDisconnect actions of a session whose node is gone", "room", room, "session", session)
	apply(room, patch)
}
