package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sigbase/sigbase/store"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Writes to different rooms that this node makes at the same time are
// committed in one etcd transaction: one Raft entry, one apply and one round
// trip for the lot instead of one each. Each write is a nested transaction
// guarded by its own room's ModRevision, so a guard that fails fails that
// write alone. The writes of a batch share its etcd revision; each gets a
// slot, its place in the batch, which is written into its values and makes
// its sigbase revision (room.go).
//
// Two batches are in flight at a time, which measured best (BENCHMARKS.md):
// a write joins the next batch while both are out, and the first write
// after a quiet spell goes at once, alone. A batch that etcd has not
// answered within stallAfter (a member without a leader holds a request
// until its own timeout) stops counting against the two, so the writes
// behind it are not held up when the cluster answers again.
const (
	// etcd checks a nested transaction's ops against --max-txn-ops (128 by
	// default) less the outer transaction's; each write has 1 compare and
	// 2 ops.
	maxBatch = 64
	// A batch stays well under etcd's --max-request-bytes (1.5 MiB by
	// default); a write bigger than this goes alone.
	maxBatchBytes = 1 << 20
	inFlight      = 2
	stallAfter    = 100 * time.Millisecond
	// giveUpAfter is how long a write waits for its batch's answer.
	giveUpAfter = time.Second
	// maxStalled bounds the batches out at once. Each holds at least one
	// waiting write, so the writers in flight bound them first.
	maxStalled = 1024
)

// proposal is one write's transaction, waiting for a batch.
type proposal struct {
	guard              clientv3.Cmp
	roomKey, changeKey string
	// The values to put, their slot bytes still to fill; nil deletes both
	// keys, and such a write goes alone: a deletion carries no slot.
	room, change []byte
	lease        clientv3.LeaseID

	done chan struct{}
	// The outcome: the revision it committed at, whether its guard held.
	rev uint64
	ok  bool
	err error
}

func (p *proposal) size() int {
	return len(p.roomKey) + len(p.changeKey) + len(p.room) + len(p.change)
}

func (p *proposal) alone() bool { return p.room == nil || p.size() > maxBatchBytes/4 }

// ops fills in the slot and gives the write's operations.
func (p *proposal) ops(slot int) []clientv3.Op {
	if p.room == nil {
		return []clientv3.Op{clientv3.OpDelete(p.roomKey), clientv3.OpDelete(p.changeKey)}
	}
	putSlot(p.room, slot)
	putSlot(p.change, slot)
	withLease := clientv3.WithLease(p.lease)
	return []clientv3.Op{
		clientv3.OpPut(p.roomKey, string(p.room), withLease),
		clientv3.OpPut(p.changeKey, string(p.change), withLease),
	}
}

func (p *proposal) finish(etcdRev int64, slot int, ok bool, err error) {
	p.rev, p.ok, p.err = revAt(etcdRev, slot), ok, err
	close(p.done)
}

// batcher sends proposals in batches.
type batcher struct {
	cli *clientv3.Client
	in  chan *proposal // unbuffered: a proposal run took is always finished
	// Tokens: of the batches in flight and not stalled, and of all.
	fresh, out chan struct{}
	wg         sync.WaitGroup // the batches out
}

func newBatcher(cli *clientv3.Client) *batcher {
	return &batcher{cli: cli, in: make(chan *proposal), fresh: make(chan struct{}, inFlight), out: make(chan struct{}, maxStalled)}
}

// commit sends the proposal in the next batch and waits for the outcome.
func (b *batcher) commit(ctx context.Context, p *proposal) error {
	p.done = make(chan struct{})
	select {
	case b.in <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	// A batch is bounded by opTimeout, but a caller stops waiting sooner:
	// when it leaves, or when etcd has not answered within giveUpAfter. A
	// member that lost its leader holds a request until its own timeout,
	// and every write of the batch would wait that long, holding its
	// room's lock. The outcome is then open, as with any transaction that
	// timed out: the guard of the room's next write orders the two either
	// way, so the room stays consistent.
	giveUp := time.NewTimer(giveUpAfter)
	defer giveUp.Stop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-giveUp.C:
		return fmt.Errorf("%w: etcd did not answer within %v", store.ErrUnavailable, giveUpAfter)
	}
}

// run sends batches until ctx ends, then waits for those out.
func (b *batcher) run(ctx context.Context) {
	defer b.wg.Wait()
	var next *proposal
	for {
		p := next
		next = nil
		if p == nil {
			select {
			case p = <-b.in:
			case <-ctx.Done():
				return
			}
		}
		// Wait for a turn; the writes arriving meanwhile join the batch.
		b.fresh <- struct{}{}
		b.out <- struct{}{}
		batch, size := []*proposal{p}, p.size()
	fill:
		for !p.alone() && len(batch) < maxBatch {
			select {
			case q := <-b.in:
				if q.alone() || size+q.size() > maxBatchBytes {
					next = q
					break fill
				}
				batch, size = append(batch, q), size+q.size()
			default:
				break fill
			}
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			var once sync.Once
			turnOver := func() { once.Do(func() { <-b.fresh }) }
			stalled := time.AfterFunc(stallAfter, turnOver)
			b.commitBatch(ctx, batch)
			stalled.Stop()
			turnOver()
			<-b.out
		}()
	}
}

func (b *batcher) commitBatch(ctx context.Context, batch []*proposal) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if len(batch) == 1 {
		p := batch[0]
		resp, err := b.cli.Txn(ctx).If(p.guard).Then(p.ops(0)...).Commit()
		if err != nil {
			p.finish(0, 0, false, err)
			return
		}
		p.finish(resp.Header.Revision, 0, resp.Succeeded, nil)
		return
	}
	ops := make([]clientv3.Op, len(batch))
	for i, p := range batch {
		ops[i] = clientv3.OpTxn([]clientv3.Cmp{p.guard}, p.ops(i), nil)
	}
	resp, err := b.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil && tooLarge(err) {
		// Over a limit of this etcd's that the defaults do not explain:
		// each write on its own, so that only one too large fails.
		for _, p := range batch {
			b.commitBatch(ctx, []*proposal{p})
		}
		return
	}
	for i, p := range batch {
		if err != nil {
			p.finish(0, 0, false, err)
			continue
		}
		p.finish(resp.Header.Revision, i, resp.Responses[i].GetResponseTxn().Succeeded, nil)
	}
}

func tooLarge(err error) bool {
	return errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrTooManyOps) ||
		strings.Contains(err.Error(), "request is too large") || strings.Contains(err.Error(), "too many operations")
}
