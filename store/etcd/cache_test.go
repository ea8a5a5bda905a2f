package etcd

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
)

// Two nodes write the same room in turn, so each node's cached copy is
// stale at every write of its own: every write must still apply to the
// room as it is (no lost update, a precondition judged on the current
// revision, a refusal and a no-op confirmed from etcd), and a room that
// etcd deleted (its lease ran out) must be written afresh.
func TestStaleCacheAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := openNodes(t, "cache", 2, store.Options{Limits: store.Limits{MaxKeys: 2}, RoomTTL: 2 * time.Second})
	at := store.Path{Room: "r", Key: "n"}
	var rev uint64
	for i := range 20 {
		s := nodes[i%2]
		// An increment against the current value: a stale copy would lose one.
		res, err := s.Put(t.Context(), at, []byte(`{".sv":{"increment":1}}`), store.Cond{})
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if string(res.Value) != strconv.Itoa(i+1) {
			t.Fatalf("write %d on node %d stored %s, want %d", i, i%2, res.Value, i+1)
		}
		// If-Match a revision that is not m's, through a copy that may be stale: refused.
		if _, err := s.Put(t.Context(), store.Path{Room: "r", Key: "m"}, []byte(`1`), store.Cond{Set: true, Rev: rev}); i > 0 && err == nil {
			t.Fatalf("write %d: If-Match %d on a key last written at another revision held", i, rev)
		}
		rev = res.Rev
		other := nodes[(i+1)%2]
		if _, err := other.Put(t.Context(), at, []byte(strconv.Itoa(i+1)), store.Cond{Set: true, Rev: rev}); err != nil {
			t.Fatalf("write %d: If-Match the revision node %d just wrote, on node %d: %v", i, i%2, (i+1)%2, err)
		}
		v, err := other.Get(at)
		if err != nil {
			t.Fatal(err)
		}
		rev = v.Rev
	}
	// The other node fills the room to MaxKeys; this node's copy says one
	// key: a third key must be refused, judged on the room as it is.
	if _, err := nodes[1].Put(t.Context(), store.Path{Room: "r", Key: "m"}, []byte(`2`), store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Put(t.Context(), store.Path{Room: "r", Key: "x"}, []byte(`3`), store.Cond{}); !errors.Is(err, store.ErrTooManyKeys) {
		t.Fatalf("third key through a stale copy: %v, want ErrTooManyKeys", err)
	}
	// The other node deletes the room; a delete through the stale copy is
	// a no-op, and a write recreates the room.
	if _, err := nodes[1].Delete(t.Context(), store.Path{Room: "r"}, store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Delete(t.Context(), store.Path{Room: "r", Key: "n"}, store.Cond{}); err != nil {
		t.Fatalf("delete in a deleted room: %v", err)
	}
	if _, err := nodes[0].Put(t.Context(), store.Path{Room: "r", Key: "x"}, []byte(`4`), store.Cond{}); err != nil {
		t.Fatalf("write after the room was deleted elsewhere: %v", err)
	}
	if v, _ := nodes[1].Get(store.Path{Room: "r"}); string(v.Data) != `{"x":4}` {
		t.Fatalf("room after re-creation: %s", v.Data)
	}
	// A room this node saw absent, then another node created: a delete
	// through the copy that says absent must still delete.
	s := store.Path{Room: "s", Key: "k"}
	if _, err := nodes[0].Delete(t.Context(), s, store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].Put(t.Context(), s, []byte(`1`), store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Delete(t.Context(), s, store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if v, _ := nodes[1].Get(s); string(v.Data) != "null" {
		t.Fatalf("s/k after a delete through a copy that said absent: %s", v.Data)
	}
	// Its lease runs out (TTL 2 s, no watchers): etcd deletes it; the next
	// write through the cached copy must create it again, under a new lease.
	time.Sleep(3500 * time.Millisecond)
	if v, _ := nodes[0].Get(store.Path{Room: "r"}); string(v.Data) != "null" {
		t.Fatalf("room after its TTL: %s", v.Data)
	}
	if _, err := nodes[0].Put(t.Context(), store.Path{Room: "r", Key: "y"}, []byte(`5`), store.Cond{}); err != nil {
		t.Fatalf("write after the lease ran out: %v", err)
	}
	if v, _ := nodes[1].Get(store.Path{Room: "r"}); string(v.Data) != `{"y":5}` {
		t.Fatalf("room written after its lease ran out: %s", v.Data)
	}
}

// openNodes opens n stores on one etcd member of the test's own, sharing a
// fresh key prefix, as n sigbase nodes would; they close at cleanup.
func openNodes(t *testing.T, name string, n int, opts store.Options) []*store.Store {
	t.Helper()
	member := startEtcd(t)
	prefix := fmt.Sprintf("/%s-%d/", name, time.Now().UnixNano())
	var nodes []*store.Store
	for range n {
		s, err := Open(Options{Endpoints: []string{member.Endpoint}, Prefix: prefix}, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		nodes = append(nodes, s)
	}
	return nodes
}

// A node watching a room keeps the room alive through its copy of it going
// stale: another node deletes the room and creates it again under a new
// lease, and the watching node must keep that lease alive, not the one its
// copy names. Once the watcher leaves, the room expires.
func TestWatchedRoomOutlivesAStaleCopy(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	nodes := openNodes(t, "kept", 2, store.Options{RoomTTL: ttl})
	a, b := nodes[0], nodes[1]
	at := store.Path{Room: "r", Key: "k"}
	if _, err := a.Put(t.Context(), at, []byte(`1`), store.Cond{}); err != nil {
		t.Fatal(err)
	}
	w, err := a.Watch(store.Path{Room: "r"}, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Delete(t.Context(), store.Path{Room: "r"}, store.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(t.Context(), at, []byte(`2`), store.Cond{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * ttl)
	if v, err := b.Get(store.Path{Room: "r"}); err != nil || string(v.Data) != `{"k":2}` {
		t.Fatalf("a room watched through node a, after 3 TTLs: %s %v", v.Data, err)
	}
	w.Close()
	deadline := time.Now().Add(ttl + 3*time.Second) // etcd checks leases about twice a second
	for {
		v, err := b.Get(store.Path{Room: "r"})
		if err != nil {
			t.Fatal(err)
		}
		if string(v.Data) == "null" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the room is still there %v after its last watcher left: %s", ttl+3*time.Second, v.Data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
