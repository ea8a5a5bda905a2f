package api

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/bolt"
	"github.com/sigbase/sigbase/store/etcd"
	"github.com/sigbase/sigbase/store/etcd/etcdtest"
)

// The contract suite runs against either backend: the embedded bbolt store
// (the default), or etcd when SIGBASE_TEST_BACKEND=etcd. Then TestMain starts
// one etcd member (the etcd binary on PATH, or Debian's /usr/bin/etcd) on
// loopback ports with its data in a temporary directory, and every test
// store gets a key prefix of its own in it.
//
// etcd's revisions are global: every test store shares them. Under etcd the
// tests that use a store therefore run one at a time (parallel(t) does
// nothing), and a test names revisions relative to the one etcd was at when
// its store opened: ts.rev(n) is the revision of the test's n-th write,
// which is n under bbolt, whose first write is revision 1, and base + n ×
// etcd.SlotsPerRev under etcd, where a write alone in its etcd transaction
// has slot 0.
var testBackend = os.Getenv("SIGBASE_TEST_BACKEND")

// testEtcd is the etcd member of this run; nil under bbolt.
var testEtcd *etcdtest.Member

func TestMain(m *testing.M) {
	switch testBackend {
	case "", "bbolt":
		os.Exit(m.Run())
	case "etcd":
	default:
		fmt.Fprintf(os.Stderr, "SIGBASE_TEST_BACKEND=%q: want bbolt or etcd\n", testBackend)
		os.Exit(2)
	}
	e, err := etcdtest.Start("api-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEtcd = e
	code := m.Run()
	e.Stop()
	os.Exit(code)
}

// parallel marks a test that uses a store as parallel, under bbolt only:
// under etcd, concurrent tests would move each other's revisions.
func parallel(t *testing.T) {
	if testEtcd == nil {
		t.Parallel()
	}
}

var storeSeq atomic.Int64

// openTestStore opens an empty store on the backend of this run and returns
// it with its base revision: the revision before its first write.
func openTestStore(tb testing.TB, opts store.Options) (*store.Store, uint64) {
	tb.Helper()
	if testEtcd == nil {
		st, err := bolt.Open(filepath.Join(tb.TempDir(), "sigbase.db"), opts)
		if err != nil {
			tb.Fatal(err)
		}
		return st, 0
	}
	prefix := fmt.Sprintf("/sigbase-test/%d-%s/", storeSeq.Add(1), strings.ReplaceAll(tb.Name(), "/", "_"))
	st, err := etcd.Open(etcd.Options{Endpoints: []string{testEtcd.Endpoint}, Prefix: prefix}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return st, st.Stats().Revision // the store read etcd's revision on opening
}

// rev is the revision of the test's n-th write (counted from the store's
// opening, over all rooms, as long as only this test writes).
func (ts *testServer) rev(n uint64) uint64 {
	if testEtcd == nil {
		return n
	}
	return ts.base + n*etcd.SlotsPerRev
}

// id is rev as an SSE id or Last-Event-ID.
func (ts *testServer) id(n uint64) string { return strconv.FormatUint(ts.rev(n), 10) }

// etag is rev as an ETag.
func (ts *testServer) etag(n uint64) string { return `"` + ts.id(n) + `"` }

// compact drops etcd's history before the etcd revision of rev, as
// --auto-compaction does.
func compact(t *testing.T, rev uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := testEtcd.Client.Compact(ctx, int64(rev/etcd.SlotsPerRev), clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact etcd at %d: %v", rev, err)
	}
}
