package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/bolt"
	"github.com/sigbase/sigbase/store/etcd"
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
// which is n under bbolt, whose first write is revision 1.
var testBackend = os.Getenv("SIGBASE_TEST_BACKEND")

// testEtcd is the etcd member of this run; nil under bbolt.
var testEtcd *etcdMember

func TestMain(m *testing.M) {
	switch testBackend {
	case "", "bbolt":
		os.Exit(m.Run())
	case "etcd":
	default:
		fmt.Fprintf(os.Stderr, "SIGBASE_TEST_BACKEND=%q: want bbolt or etcd\n", testBackend)
		os.Exit(2)
	}
	e, err := startEtcd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEtcd = e
	code := m.Run()
	e.stop()
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
	st, err := etcd.Open(etcd.Options{Endpoints: []string{testEtcd.endpoint}, Prefix: prefix}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return st, st.Stats().Revision // the store read etcd's revision on opening
}

// rev is the revision of the test's n-th write (counted from the store's
// opening, over all rooms, as long as only this test writes).
func (ts *testServer) rev(n uint64) uint64 { return ts.base + n }

// id is rev as an SSE id or Last-Event-ID.
func (ts *testServer) id(n uint64) string { return strconv.FormatUint(ts.rev(n), 10) }

// etag is rev as an ETag.
func (ts *testServer) etag(n uint64) string { return `"` + ts.id(n) + `"` }

// etcdMember is one etcd server, a child of the test binary.
type etcdMember struct {
	cmd      *exec.Cmd
	dir      string
	endpoint string
	cli      *clientv3.Client
}

// startEtcd runs a one-member cluster on two free loopback ports. Short
// heartbeat and election settings keep its start quick.
func startEtcd() (*etcdMember, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		bin = "/usr/bin/etcd"
	}
	dir, err := os.MkdirTemp("", "sigbase-api-etcd")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--name", "api-test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "api-test="+peer, "--heartbeat-interval", "50", "--election-timeout", "500")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the tests
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start etcd (SIGBASE_TEST_BACKEND=etcd needs it): %w", err)
	}
	e := &etcdMember{cmd: cmd, dir: dir, endpoint: client}
	if err := e.waitReady(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
		e.stop()
		return nil, fmt.Errorf("etcd on %s: %w\n%s", client, err, log)
	}
	return e, nil
}

func (e *etcdMember) waitReady() error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	e.cli = cli
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "ready")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// compact drops etcd's history before rev, as --auto-compaction does.
func (e *etcdMember) compact(t *testing.T, rev uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.cli.Compact(ctx, int64(rev), clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact etcd at %d: %v", rev, err)
	}
}

func (e *etcdMember) stop() {
	if e.cli != nil {
		e.cli.Close()
	}
	e.cmd.Process.Kill()
	e.cmd.Wait()
	os.RemoveAll(e.dir)
}

// freePorts finds n distinct free loopback ports, holding each until all
// are found.
func freePorts(n int) ([]int, error) {
	var ports []int
	var errs []error
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			errs = append(errs, err)
			break
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, errors.Join(errs...)
}
