//go:build linux

package main

// sigbase on etcd (--store etcd://...): several sigbase processes on one
// etcd serve any room, in revision order, with exact resume from node to
// node and rooms that expire on etcd leases; and a 3-member etcd cluster
// that loses its leader under load loses nothing acknowledged.
//
// etcd is Debian's etcd-server (/usr/bin/etcd), run on loopback ports with
// short heartbeat and election settings. Without it these tests skip,
// unless SIGBASE_FULL_TESTS=1 (CI), where they fail.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdCluster is n etcd members on loopback, run for one test.
type etcdCluster struct {
	members []*etcdMember
}

type etcdMember struct {
	name, client, peer string
	args               []string // the command line: a restart reuses it
	proc               *pxProc
}

// startEtcdCluster starts n members and waits until they agree on a
// leader. With a 50 ms heartbeat and a 500 ms election timeout, elections
// take about a second and etcd's shortest lease is 1 s.
func startEtcdCluster(t *testing.T, n int) *etcdCluster {
	t.Helper()
	bin := pxTool(t, "etcd", "/usr/bin/etcd")
	dir := t.TempDir()
	ports := pxFreePorts(t, 2*n)
	c := &etcdCluster{}
	var initial []string
	for i := range n {
		m := &etcdMember{
			name:   fmt.Sprintf("m%d", i),
			client: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range c.members {
		m.args = []string{bin, "--name", m.name, "--data-dir", filepath.Join(dir, m.name),
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(dir),
			"--heartbeat-interval", "50", "--election-timeout", "500"}
		m.start(t)
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.leader(t) < 0 {
		if time.Now().After(deadline) {
			for _, m := range c.members {
				out := m.proc.out.String()
				t.Logf("etcd %s:\n%s", m.name, out[max(0, len(out)-2000):])
			}
			t.Fatal("etcd members never agreed on a leader")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// leader is the index of the member every running member names as leader,
// or -1.
func (c *etcdCluster) leader(t *testing.T) int {
	t.Helper()
	leader, at := uint64(0), -1
	for i, m := range c.members {
		if m.proc.exited() {
			continue
		}
		st, err := memberStatus(m.client)
		if err != nil || st.Leader == 0 || leader != 0 && st.Leader != leader {
			return -1
		}
		leader = st.Leader
		if st.Header.MemberId == st.Leader {
			at = i
		}
	}
	return at
}

func memberStatus(endpoint string) (*clientv3.StatusResponse, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return cli.Status(ctx, endpoint)
}

// store is the --store flag naming every member.
func (c *etcdCluster) store(prefix string) string {
	var hosts []string
	for _, m := range c.members {
		hosts = append(hosts, strings.TrimPrefix(m.client, "http://"))
	}
	return "etcd://" + strings.Join(hosts, ",") + "/" + prefix
}

// start runs the member (again: its data directory holds its state).
func (m *etcdMember) start(t *testing.T) {
	m.proc = pxStart(t, "etcd "+m.name, nil, m.args...)
}

// kill ends a member with SIGKILL: no goodbye to its peers.
func (m *etcdMember) kill() {
	syscall.Kill(m.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-m.proc.done
}

// Three sigbase processes on one etcd. A watcher on node A sees every
// write made through A and B, sequential or racing, in revision order,
// none twice; it reconnects to node C with its Last-Event-ID and gets
// exactly what it missed. Rooms expire on their etcd leases, except while
// a watcher on any node holds them.
func TestEtcdNodesServeAnyRoom(t *testing.T) {
	t.Parallel()
	cluster := startEtcdCluster(t, 1)
	var nodes []string
	for range 3 {
		// A watcher that leaves is noticed at the next write to its stream:
		// frequent keep-alives start the TTL of a room it left soon.
		p := startProcess(t, "--addr", "127.0.0.1:0", "--store", cluster.store("nodes"), "--room-ttl", "2s",
			"--keepalive", "300ms", "--rate-limit", "0")
		nodes = append(nodes, p.url)
	}
	a, b, c := nodes[0], nodes[1], nodes[2]

	onA := &roomFollower{room: "x"}
	stopA := onA.streamFrom(a)
	onB := &roomFollower{room: "x"}
	defer onB.streamFrom(b)()
	onA.waitEvents(t, 1)
	onB.waitEvents(t, 1)

	var acked []uint64
	for i := range 20 { // PUT, POST, PATCH through A and B in turn
		node := nodes[i%2]
		switch i % 3 {
		case 0:
			acked = append(acked, mustWrite(t, "PUT", node+"/rooms/x/k"+strconv.Itoa(i), strconv.Itoa(i)))
		case 1:
			acked = append(acked, mustWrite(t, "POST", node+"/rooms/x/cands", `{"candidate":"c`+strconv.Itoa(i)+`"}`))
		default:
			acked = append(acked, mustWrite(t, "PATCH", node+"/rooms/x", fmt.Sprintf(`{"p/c%d":%d,"q":%d}`, i, i, i)))
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, node := range []string{a, b} { // racing writers: etcd transactions retry on conflict
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				rev, err := write("PUT", fmt.Sprintf("%s/rooms/x/race%d", node, i%4), strconv.Itoa(i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, rev)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(acked)
	onA.expectChanges(t, 1, acked)
	onB.expectChanges(t, 1, acked)

	// A disconnects; B takes writes; the watcher resumes on C.
	stopA()
	seen := len(onA.view().events)
	var missed []uint64
	for i := range 10 {
		missed = append(missed, mustWrite(t, "PUT", b+"/rooms/x/m"+strconv.Itoa(i), strconv.Itoa(i)))
	}
	defer onA.streamFrom(c)()
	missed = append(missed, mustWrite(t, "PUT", a+"/rooms/x/live", `"after the resume"`))
	onA.expectChanges(t, seen, missed)
	onB.expectChanges(t, 1, append(slices.Clone(acked), missed...))
	for _, w := range []*roomFollower{onA, onB} {
		w.expectRoom(t, c)
	}
	mustWrite(t, "DELETE", b+"/rooms/x", "")
	for _, w := range []*roomFollower{onA, onB} {
		w.waitFor(t, "the room deleted", func(f followerView) bool { return len(f.events) > 0 && f.state == nil })
	}

	// A room emptied by deleting its last key reads null for its watchers.
	emptied := &roomFollower{room: "emptied"}
	defer emptied.streamFrom(b)()
	emptied.waitEvents(t, 1)
	mustWrite(t, "PUT", a+"/rooms/emptied/k", "1")
	emptied.waitFor(t, "the write", func(f followerView) bool { return f.state != nil })
	mustWrite(t, "DELETE", c+"/rooms/emptied/k", "")
	emptied.waitFor(t, "the room emptied", func(f followerView) bool { return len(f.events) == 3 && f.state == nil })

	// TTL: an unwatched room expires; a watched one stays until its last
	// watcher left, then expires, and its watcher resumes to null.
	kept := &roomFollower{room: "kept"}
	stopKept := kept.streamFrom(c)
	kept.waitEvents(t, 1)
	mustWrite(t, "PUT", a+"/rooms/gone/k", `"v"`)
	written := time.Now()
	mustWrite(t, "PUT", a+"/rooms/kept/k", `"v"`)
	kept.waitEvents(t, 2)
	if took := waitRoomNull(t, b, "gone", written); took < 1500*time.Millisecond {
		t.Errorf("an unwatched room with a 2s TTL expired after %v", took)
	}
	time.Sleep(time.Until(written.Add(5 * time.Second))) // 2.5 TTLs
	if code, body := request(t, "GET", b+"/rooms/kept", ""); code != 200 || body != `{"k":"v"}` {
		t.Fatalf("a room watched through node C, read through B after 2.5 TTLs: %d %s", code, body)
	}
	stopKept()
	waitRoomNull(t, a, "kept", time.Now())
	before := kept.view().lastID
	defer kept.streamFrom(a)()
	kept.waitFor(t, "put / null after the expiry", func(f followerView) bool { return f.lastID > before && f.state == nil })
}

// A 3-member etcd cluster loses its leader (SIGKILL) under writes and
// watches through two sigbase nodes. Writes go on after a short election,
// every acknowledged write is there at the end, and every watcher's room,
// built from its events alone, equals the room, having seen every
// acknowledged revision or a snapshot past it.
func TestEtcdMemberLossLosesNothing(t *testing.T) {
	t.Parallel()
	cluster := startEtcdCluster(t, 3)
	load := startEtcdLoad(t, cluster, "loss")
	time.Sleep(1500 * time.Millisecond)
	victim := cluster.leader(t)
	wasLeader := victim >= 0
	if !wasLeader {
		victim = 0
	}
	killed := time.Now()
	cluster.members[victim].kill()
	time.Sleep(4 * time.Second)
	before, after, pause := load.stop(killed)
	t.Logf("killed etcd %s (the leader: %v): %d writes acknowledged before, %d after; longest pause %v",
		cluster.members[victim].name, wasLeader, before, after, pause)
	if before == 0 || after < 10 || pause > 3*time.Second {
		t.Fatalf("writes did not go on after losing a member: %d before, %d after, longest pause %v", before, after, pause)
	}
	load.verify(t)
}

// Two of three members die: no quorum, so writes fail (and are not
// acknowledged), and the nodes' etcd watches end (etcd cancels them without
// a leader). Once the members are back, writes go on, the watches restart
// where they stopped, and every watcher ends with its room, no revision
// missed.
func TestEtcdQuorumLossLosesNothing(t *testing.T) {
	t.Parallel()
	cluster := startEtcdCluster(t, 3)
	load := startEtcdLoad(t, cluster, "quorum")
	time.Sleep(time.Second)
	down := []*etcdMember{cluster.members[0], cluster.members[1]}
	for _, m := range down {
		m.kill()
	}
	time.Sleep(3 * time.Second) // longer than etcd takes to end watches without a leader
	back := time.Now()
	for _, m := range down {
		m.start(t)
	}
	time.Sleep(3 * time.Second)
	before, after, pause := load.stop(back)
	t.Logf("2 of 3 etcd members down for 3s: %d writes acknowledged before they were back, %d after; longest pause after %v",
		before, after, pause)
	if before == 0 || after < 10 {
		t.Fatalf("writes did not resume with the quorum: %d before, %d after", before, after)
	}
	load.verify(t)
}

// A member that hangs (SIGSTOP: like a frozen machine or a partition, no
// TCP reset) is dropped by the nodes' keep-alive pings within about 13 s;
// then writes flow again, and nothing acknowledged is lost.
func TestEtcdHungMemberIsDropped(t *testing.T) {
	t.Parallel()
	cluster := startEtcdCluster(t, 3)
	load := startEtcdLoad(t, cluster, "hung")
	time.Sleep(1500 * time.Millisecond)
	victim := max(cluster.leader(t), 0)
	m := cluster.members[victim]
	stopped := time.Now()
	syscall.Kill(m.proc.cmd.Process.Pid, syscall.SIGSTOP)
	defer m.kill() // SIGKILL ends a stopped process too
	var recovered time.Duration
	for recovered == 0 {
		time.Sleep(500 * time.Millisecond)
		if load.acksSince(time.Now().Add(-time.Second)) >= 50 && time.Since(stopped) > 2*time.Second {
			recovered = time.Since(stopped)
		}
		if time.Since(stopped) > 25*time.Second {
			t.Fatalf("writes did not recover within 25s of etcd %s hanging", m.name)
		}
	}
	time.Sleep(time.Second)
	before, after, _ := load.stop(stopped)
	t.Logf("etcd %s hung: %d writes acknowledged before, %d after; flowing again after %v", m.name, before, after, recovered)
	load.verify(t)
}

// docs/deploy/nginx-cluster.conf, as written, in front of two sigbase
// nodes on etcd: two watchers through nginx land on different nodes; one
// node dies (SIGKILL); every write through nginx still succeeds, and the
// watcher that lost its node resumes through nginx on the other one, so
// both see every write once, in order.
func TestEtcdNodesBehindNginx(t *testing.T) {
	bin := pxTool(t, "nginx", "/usr/sbin/nginx")
	t.Parallel()
	cluster := startEtcdCluster(t, 1)
	var nodes []*process
	for range 2 {
		nodes = append(nodes, startProcess(t, "--addr", "127.0.0.1:0", "--store", cluster.store("lb"), "--rate-limit", "0"))
	}
	lb := nginxCluster(t, bin, nodes[0].url, nodes[1].url)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var followers []*roomFollower
	for range 2 {
		f := &roomFollower{room: "r"}
		followers = append(followers, f)
		go f.follow(ctx, lb)
		f.waitEvents(t, 1) // least_conn: the second stream goes to the other node
	}
	var acked []uint64
	for i := range 40 {
		if i == 20 {
			nodes[0].kill()
		}
		acked = append(acked, mustWrite(t, "PUT", lb+"/rooms/r/k"+strconv.Itoa(i%5), strconv.Itoa(i)))
	}
	streams := 0
	for _, f := range followers {
		f.expectChanges(t, 1, acked)
		f.expectRoom(t, lb)
		streams += f.view().streams
	}
	if streams != 3 {
		t.Errorf("the watchers opened %d streams, want 3: one each, and one resume after the node died", streams)
	}
}

// nginxCluster runs docs/deploy/nginx-cluster.conf in front of two nodes
// and returns its URL.
func nginxCluster(t *testing.T, bin, node1, node2 string) string {
	t.Helper()
	dir := t.TempDir()
	site := pxDoc(t, "nginx-cluster.conf")
	for attempt := 1; ; attempt++ {
		port := pxFreePorts(t, 1)[0]
		conf := site
		for _, r := range [][2]string{
			{"server sigbase-1:8080;", "server " + strings.TrimPrefix(node1, "http://") + ";"},
			{"server sigbase-2:8080;", "server " + strings.TrimPrefix(node2, "http://") + ";"},
			{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port)},
		} {
			conf = pxReplace(t, conf, r[0], r[1])
		}
		pxWrite(t, filepath.Join(dir, "site.conf"), conf)
		pxWrite(t, filepath.Join(dir, "nginx.conf"), pxNginxMain(dir, "site.conf"))
		p := pxStart(t, "nginx", nil, bin, "-p", dir+"/", "-e", "stderr", "-c", filepath.Join(dir, "nginx.conf"))
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		if pxReady(t, p, http.DefaultClient, url+"/healthz", attempt) {
			return url
		}
	}
}

// etcdLoad is writers and watchers on two sigbase nodes of one etcd
// cluster: six writers each PUT increasing values to a key of their own in
// three rooms, through both nodes in turn; two watchers per room, one per
// node, follow it across disconnections.
type etcdLoad struct {
	nodes     []string
	followers []*roomFollower
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu   sync.Mutex
	last map[string]loadAck // room/key → its last acknowledged write
	acks []loadAck          // in acknowledgement order
}

type loadAck struct {
	room, key string
	value     int
	rev       uint64
	at        time.Time
}

func startEtcdLoad(t *testing.T, cluster *etcdCluster, prefix string) *etcdLoad {
	t.Helper()
	l := &etcdLoad{last: map[string]loadAck{}}
	for range 2 {
		p := startProcess(t, "--addr", "127.0.0.1:0", "--store", cluster.store(prefix), "--rate-limit", "0")
		l.nodes = append(l.nodes, p.url)
	}
	const rooms, writers = 3, 6
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	t.Cleanup(cancel)
	for r := range rooms {
		for _, node := range l.nodes {
			f := &roomFollower{room: fmt.Sprintf("room%d", r)}
			l.followers = append(l.followers, f)
			go f.follow(ctx, node)
			f.waitEvents(t, 1)
		}
	}
	wctx, stopWriters := context.WithCancel(ctx)
	l.cancel = stopWriters
	for w := range writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.write(wctx, fmt.Sprintf("room%d", w%rooms), fmt.Sprintf("w%d", w), w)
		}()
	}
	return l
}

func (l *etcdLoad) write(ctx context.Context, room, key string, w int) {
	client := &http.Client{Timeout: 3 * time.Second}
	for v := 1; ctx.Err() == nil; v++ {
		req, _ := http.NewRequestWithContext(ctx, "PUT", l.nodes[(w+v)%2]+"/rooms/"+room+"/"+key, strings.NewReader(strconv.Itoa(v)))
		res, err := client.Do(req)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		rev, _ := strconv.ParseUint(strings.Trim(res.Header.Get("ETag"), `"`), 10, 64)
		a := loadAck{room, key, v, rev, time.Now()}
		l.mu.Lock()
		l.last[room+"/"+key] = a
		l.acks = append(l.acks, a)
		l.mu.Unlock()
	}
}

// acksSince counts the writes acknowledged since a moment.
func (l *etcdLoad) acksSince(moment time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.acks {
		if !a.at.Before(moment) {
			n++
		}
	}
	return n
}

// stop ends the writers and counts the writes acknowledged before and
// after a moment, with the longest time without any after it.
func (l *etcdLoad) stop(moment time.Time) (before, after int, pause time.Duration) {
	l.cancel()
	l.wg.Wait()
	prev := moment
	for _, a := range l.acks {
		if a.at.Before(moment) {
			before++
			continue
		}
		after++
		pause = max(pause, a.at.Sub(prev))
		prev = a.at
	}
	return before, after, pause
}

// verify checks, once the writers stopped, that every acknowledged write is
// there through every node, and that every watcher built its room exactly,
// having got each acknowledged revision of it or a snapshot past it.
func (l *etcdLoad) verify(t *testing.T) {
	t.Helper()
	for _, a := range l.last {
		for _, node := range l.nodes {
			code, body := request(t, "GET", node+"/rooms/"+a.room+"/"+a.key, "")
			if got, _ := strconv.Atoi(body); code != 200 || got < a.value {
				t.Fatalf("%s/%s through %s = %d %s, but %d was acknowledged", a.room, a.key, node, code, body, a.value)
			}
		}
	}
	for _, f := range l.followers {
		var revs []uint64
		for _, a := range l.acks {
			if a.room == f.room {
				revs = append(revs, a.rev)
			}
		}
		f.waitFor(t, "the last acknowledged write", func(s followerView) bool { return s.lastID >= slices.Max(revs) })
		f.expectRoom(t, l.nodes[0])
		if missing := f.uncovered(revs); len(missing) > 0 {
			t.Errorf("a watcher of %s never got revisions %v (nor a snapshot past them)", f.room, missing)
		}
		v := f.view()
		snapshots := 0
		for _, e := range v.events {
			if e.event == "put" && e.path == "/" {
				snapshots++
			}
		}
		t.Logf("watcher of %s: %d events in %d streams, %d of them snapshots", f.room, len(v.events), v.streams, snapshots)
	}
}

// mustWrite sends a write and returns its revision (the ETag; 0 for a
// delete).
func mustWrite(t *testing.T, method, url, body string) uint64 {
	t.Helper()
	rev, err := write(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func write(method, url, body string) (uint64, error) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		return 0, fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
	if etag := strings.Trim(res.Header.Get("ETag"), `"`); etag != "null_etag" {
		return strconv.ParseUint(etag, 10, 64)
	}
	return 0, nil
}

// waitRoomNull polls a room through a node until it reads null, and says
// how long after since that was.
func waitRoomNull(t *testing.T, node, room string, since time.Time) time.Duration {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, body := request(t, "GET", node+"/rooms/"+room, ""); body == "null" {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			t.Fatalf("room %s never expired", room)
		}
	}
}

// roomFollower follows one room over SSE, resuming with Last-Event-ID
// after its first stream, and builds the room from its events alone.
type roomFollower struct {
	room string

	mu      sync.Mutex
	lastID  uint64
	events  []followed // every put and patch, in arrival order
	streams int        // responses to watch requests
	state   any        // the room built from the events: nil, or map[string]any
	err     error
}

type followed struct {
	id, prev    uint64 // prev: the last id before this event
	event, path string
}

// streamFrom follows the room through one node until the returned stop is
// called.
func (f *roomFollower) streamFrom(node string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.stream(ctx, node) }()
	return func() { cancel(); <-done }
}

// follow reconnects to the node until ctx ends.
func (f *roomFollower) follow(ctx context.Context, node string) {
	for ctx.Err() == nil {
		f.stream(ctx, node)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (f *roomFollower) stream(ctx context.Context, node string) {
	req, _ := http.NewRequestWithContext(ctx, "GET", node+"/rooms/"+f.room, nil)
	req.Header.Set("Accept", "text/event-stream")
	f.mu.Lock()
	if len(f.events) > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(f.lastID, 10))
	}
	f.mu.Unlock()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	f.mu.Lock()
	f.streams++
	f.mu.Unlock()
	changes(res.Body, f.apply)
}

func (f *roomFollower) apply(idText, event, data string) {
	var msg struct {
		Path string          `json:"path"`
		Data json.RawMessage `json:"data"`
	}
	id, err := strconv.ParseUint(idText, 10, 64)
	if err == nil {
		err = json.Unmarshal([]byte(data), &msg)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.fail("event id %q data %q: %v", idText, data, err)
		return
	}
	// Only a put of "/" (a snapshot) may repeat the last id.
	if len(f.events) > 0 && (id < f.lastID || id == f.lastID && (event != "put" || msg.Path != "/")) {
		f.fail("room %s: %s %s id %d after %d: out of order or twice", f.room, event, msg.Path, id, f.lastID)
	}
	at := splitPath(msg.Path)
	if event == "put" {
		f.state = setAt(f.state, at, decode(msg.Data))
	} else {
		var members map[string]json.RawMessage
		json.Unmarshal(msg.Data, &members)
		for name, v := range members {
			f.state = setAt(f.state, append(slices.Clone(at), strings.Split(name, "/")...), decode(v))
		}
	}
	f.events = append(f.events, followed{id: id, prev: f.lastID, event: event, path: msg.Path})
	f.lastID = id
}

func (f *roomFollower) fail(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, args...)
	}
}

func splitPath(p string) []string {
	if p = strings.Trim(p, "/"); p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func decode(raw json.RawMessage) any {
	var v any
	json.Unmarshal(raw, &v)
	return v
}

// setAt sets the value at a path below v, as the store does: null deletes,
// an object left empty disappears, writing below a plain value replaces it.
func setAt(v any, path []string, val any) any {
	if len(path) == 0 {
		if m, ok := val.(map[string]any); ok && len(m) == 0 {
			return nil
		}
		return val
	}
	m, ok := v.(map[string]any)
	if !ok {
		if val == nil {
			return v
		}
		m = map[string]any{}
	}
	if child := setAt(m[path[0]], path[1:], val); child == nil {
		delete(m, path[0])
	} else {
		m[path[0]] = child
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// followerView is a copy of what a follower got so far.
type followerView struct {
	lastID  uint64
	events  []followed
	streams int
	state   any
	err     error
}

func (f *roomFollower) view() followerView {
	f.mu.Lock()
	defer f.mu.Unlock()
	return followerView{lastID: f.lastID, streams: f.streams, events: slices.Clone(f.events), state: deepCopy(f.state), err: f.err}
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	return decode(b)
}

// waitFor polls until cond holds, failing on a follower error or after 10 s.
func (f *roomFollower) waitFor(t *testing.T, what string, cond func(followerView) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s := f.view()
		if s.err != nil {
			t.Fatal(s.err)
		}
		if cond(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher of %s: never saw %s; last id %d, %d events, state %v", f.room, what, s.lastID, len(s.events), s.state)
		}
	}
}

func (f *roomFollower) waitEvents(t *testing.T, n int) {
	t.Helper()
	f.waitFor(t, fmt.Sprintf("%d events", n), func(s followerView) bool { return len(s.events) >= n })
}

// expectChanges waits until the follower has events from index `from` on
// for each revision in want, and checks they are exactly those.
func (f *roomFollower) expectChanges(t *testing.T, from int, want []uint64) {
	t.Helper()
	f.waitEvents(t, from+len(want))
	var got []uint64
	for _, e := range f.view().events[from:] {
		got = append(got, e.id)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("watcher of %s: got ids %v, want %v", f.room, got, want)
	}
}

// expectRoom waits until the follower's room equals the room read through
// a node.
func (f *roomFollower) expectRoom(t *testing.T, node string) {
	t.Helper()
	_, body := request(t, "GET", node+"/rooms/"+f.room, "")
	want := decode(json.RawMessage(body))
	f.waitFor(t, "the room as read: "+body, func(s followerView) bool { return reflect.DeepEqual(s.state, want) })
}

// uncovered lists the revisions the follower neither got as an event nor
// skipped with a snapshot (a put of "/") taken after them.
func (f *roomFollower) uncovered(revs []uint64) []uint64 {
	s := f.view()
	var missing []uint64
	for _, r := range revs {
		if !slices.ContainsFunc(s.events, func(e followed) bool {
			return e.id == r || e.event == "put" && e.path == "/" && e.prev < r && r <= e.id
		}) {
			missing = append(missing, r)
		}
	}
	return missing
}

// onDisconnect on etcd: when the node serving a member's stream dies, the
// record's lease runs out and another node applies it; a member whose
// stream moves to another node within the grace period keeps its key.
func TestEtcdOnDisconnectWhenNodeDies(t *testing.T) {
	t.Parallel()
	cluster := startEtcdCluster(t, 1)
	args := []string{"--addr", "127.0.0.1:0", "--store", cluster.store("presence"), "--rate-limit", "0", "--disconnect-grace", "1s"}
	dying, staying := startProcess(t, args...), startProcess(t, args...)
	stream := func(node, peer string) string {
		v := url.Values{"session": {peer}, "ondisconnect": {`{"op":"delete","path":"members/` + peer + `"}`}}
		return node + "/rooms/r?" + v.Encode()
	}
	for _, peer := range []string{"gone", "moved"} {
		mustWrite(t, "PUT", staying.url+"/rooms/r/members/"+peer, `true`)
		followStream(t, stream(dying.url, peer))
	}
	time.Sleep(3 * time.Second) // past the leases' first keep-alive: alive streams keep their keys
	for _, peer := range []string{"gone", "moved"} {
		if _, body := request(t, "GET", staying.url+"/rooms/r/members/"+peer, ""); body != "true" {
			t.Fatalf("members/%s = %s while its stream is open", peer, body)
		}
	}
	dying.kill()
	followStream(t, stream(staying.url, "moved")) // the member's client reconnects elsewhere in time
	died := time.Now()
	deadline := died.Add(20 * time.Second)
	for {
		if _, body := request(t, "GET", staying.url+"/rooms/r/members/gone", ""); body == "null" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the member of the dead node is still there 20 s later")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("members/gone deleted %v after its node died", time.Since(died).Round(100*time.Millisecond))
	time.Sleep(5 * time.Second) // past every lease of the dead node
	if _, body := request(t, "GET", staying.url+"/rooms/r/members/moved", ""); body != "true" {
		t.Fatalf("members/moved = %s; its stream came back on another node in time", body)
	}
}
