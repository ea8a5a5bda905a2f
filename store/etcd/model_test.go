package etcd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/etcd/etcdtest"
	"github.com/sigbase/sigbase/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestModel runs the model test (storetest.RunModel) on an etcd member of
// its own, each run under a key prefix of its own. The runs share the
// member's revisions, so they run one at a time (Harness.Serial). Where
// etcd differs from bbolt, the Harness says so: a write that leaves an
// absent room absent takes no revision; resumes replay from etcd's history,
// which this test never compacts; watchers get their changes from etcd
// watches, asynchronously, so there is no Published to wait for.
//
// Each replaying resume is an etcd watch from a past revision, which etcd
// serves from a loop that runs every 100 ms: the checkpoints open 64 at a
// time (ParallelResumes), and the runs make 150 writes instead of 500, which
// keeps the test near a minute and a half under -race (500: five minutes).
func TestModel(t *testing.T) {
	t.Parallel()
	member := startEtcd(t)
	cli := member.Client
	runs := 0
	prefixes := map[*store.Store]string{}
	storetest.RunModel(t, storetest.Harness{
		Open: func(t *testing.T, opts store.Options) *store.Store {
			runs++
			prefix := fmt.Sprintf("/sigbase-model/%d-%s/", runs, strings.ReplaceAll(t.Name(), "/", "_"))
			s, err := Open(Options{Endpoints: []string{member.Endpoint}, Prefix: prefix}, opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			})
			prefixes[s] = prefix
			return s
		},
		Bookkeeping: func(t *testing.T, s *store.Store, room string) (created, floor uint64, ok bool) {
			return checkBookkeeping(t, cli, prefixes[s], room)
		},
		NoOpKeepsRevision: true,
		RevisionScale:     SlotsPerRev,
		FullHistory:       true,
		Serial:            true,
		Ops:               150,
		ParallelResumes:   64,
	})
}

// checkBookkeeping reads a room's two keys (etcd.go): both or neither
// exist; both were written by the room's last write, on one live lease; the
// room value decodes and its change decodes. The room's incarnation is the
// room key's CreateRevision; its floor is 0, since the test compacts
// nothing.
func checkBookkeeping(t *testing.T, cli *clientv3.Client, prefix, room string) (created, floor uint64, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := cli.Txn(ctx).Then(clientv3.OpGet(prefix+"rooms/"+room), clientv3.OpGet(prefix+"changes/"+room)).Commit()
	if err != nil {
		t.Fatalf("bookkeeping of %s: %v", room, err)
	}
	roomKVs, changeKVs := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(roomKVs) == 0 || len(changeKVs) == 0 {
		if len(roomKVs) != len(changeKVs) {
			t.Fatalf("room %s: %d room values, %d change values: want both or neither", room, len(roomKVs), len(changeKVs))
		}
		return 0, 0, false
	}
	rk, ck := roomKVs[0], changeKVs[0]
	r, lease, err := decodeRoom(rk.Value, rk.ModRevision)
	if err != nil {
		t.Fatalf("room %s: %v", room, err)
	}
	if _, err := decodeChange(room, ck.Value, ck.ModRevision); err != nil {
		t.Fatalf("room %s: change: %v", room, err)
	}
	switch {
	case rk.ModRevision != ck.ModRevision || rk.CreateRevision != ck.CreateRevision:
		t.Errorf("room %s: room value created %d, modified %d; change created %d, modified %d: want the same", room, rk.CreateRevision, rk.ModRevision, ck.CreateRevision, ck.ModRevision)
	case lease == 0 || rk.Lease != lease || ck.Lease != lease:
		t.Errorf("room %s: lease %d in the value, keys on %d and %d", room, lease, rk.Lease, ck.Lease)
	case r.Keys() == 0:
		t.Errorf("room %s is stored with no keys", room)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil || ttl.TTL <= 0 {
		t.Errorf("room %s: lease %d: TTL %v, %v", room, lease, ttl, err)
	}
	return uint64(rk.CreateRevision), 0, true
}

// startEtcd runs a member for the test, stopped at cleanup. Without an etcd
// binary the test skips, unless SIGBASE_FULL_TESTS=1 (CI), where it fails.
func startEtcd(t *testing.T) *etcdtest.Member {
	t.Helper()
	m, err := etcdtest.Start("model-test")
	if errors.Is(err, etcdtest.ErrNoEtcd) && os.Getenv("SIGBASE_FULL_TESTS") != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}
