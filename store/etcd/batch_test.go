package etcd

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
)

// Writes to many rooms at once share etcd transactions (batch.go). Every
// write must still get a revision of its own, strictly increasing in each
// room; a write whose guard fails inside a batch (its node's copy of the
// room is stale) must retry alone, without failing the others; and a resume
// from a write whose slot is not 0 must replay exactly the room's later
// writes.
func TestBatchedWrites(t *testing.T) {
	t.Parallel()
	nodes := openNodes(t, "batch", 2, store.Options{})
	node, other := nodes[0], nodes[1]
	const rooms, writes = 40, 25
	at := func(r int) store.Path { return store.Path{Room: "r" + strconv.Itoa(r), Key: "n"} }

	// The node writes every room once, so it caches them; the other node
	// then writes half of them, which makes those copies stale.
	for r := range rooms {
		if _, err := node.Put(t.Context(), at(r), []byte(`0`), store.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	for r := 0; r < rooms; r += 2 {
		if _, err := other.Put(t.Context(), at(r), []byte(`{".sv":{"increment":100}}`), store.Cond{}); err != nil {
			t.Fatal(err)
		}
	}

	revs := make([][]uint64, rooms)
	var wg sync.WaitGroup
	errs := make(chan error, rooms)
	for r := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range writes {
				res, err := node.Put(t.Context(), at(r), []byte(`{".sv":{"increment":1}}`), store.Cond{})
				if err != nil {
					errs <- fmt.Errorf("room %d: %w", r, err)
					return
				}
				revs[r] = append(revs[r], res.Rev)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	seen := map[uint64]int{}
	perEtcdRev := map[int64]int{}
	for r, rs := range revs {
		for i, rev := range rs {
			if prev, dup := seen[rev]; dup {
				t.Fatalf("revision %d given to rooms %d and %d", rev, prev, r)
			}
			seen[rev] = r
			perEtcdRev[etcdRevOf(rev)]++
			if i > 0 && rev <= rs[i-1] {
				t.Fatalf("room %d: revision %d after %d", r, rev, rs[i-1])
			}
		}
		want := writes
		if r%2 == 0 {
			want += 100 // the other node's write is not lost
		}
		v, err := node.Get(at(r))
		if err != nil || string(v.Data) != strconv.Itoa(want) || v.Rev != rs[len(rs)-1] {
			t.Fatalf("room %d: %s at %d (%v), want %d at %d", r, v.Data, v.Rev, err, want, rs[len(rs)-1])
		}
	}
	if len(perEtcdRev) == rooms*writes {
		t.Fatalf("%d writes in %d etcd revisions: nothing was batched", rooms*writes, len(perEtcdRev))
	}
	t.Logf("%d writes in %d etcd transactions", rooms*writes, len(perEtcdRev))

	// Resume each room from a write of a shared transaction with a slot
	// above 0: the replay is the room's later writes, exactly.
	resumed := 0
	for r, rs := range revs {
		for i, rev := range rs[:len(rs)-1] {
			if rev%SlotsPerRev == 0 {
				continue
			}
			resumed++
			w, err := node.Watch(at(r), rev, true)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			deadline := time.After(10 * time.Second)
			for len(got) < len(rs)-1-i {
				select {
				case <-w.Ready():
					evs, err := w.Next()
					if err != nil {
						t.Fatal(err)
					}
					for _, ev := range evs {
						got = append(got, ev.Rev)
					}
				case <-deadline:
					t.Fatalf("room %d resumed after %d: %v, want %v", r, rev, got, rs[i+1:])
				}
			}
			if !w.Replayed() || fmt.Sprint(got) != fmt.Sprint(rs[i+1:]) {
				t.Fatalf("room %d resumed after %d: replayed %v: %v, want %v", r, rev, w.Replayed(), got, rs[i+1:])
			}
			w.Close()
			break
		}
	}
	if resumed == 0 {
		t.Fatal("no write had a slot above 0")
	}
}
