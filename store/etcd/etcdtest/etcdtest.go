// Package etcdtest runs a one-member etcd cluster on loopback, as a child
// of the test binary, for the tests of the etcd engine and of the API on it.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNoEtcd: neither an etcd on PATH nor Debian's /usr/bin/etcd.
var ErrNoEtcd = errors.New("no etcd on PATH and no /usr/bin/etcd (Debian: apt-get install etcd-server)")

// Member is one running etcd server.
type Member struct {
	Endpoint string           // its client URL
	Client   *clientv3.Client // a client of it, closed by Stop
	cmd      *exec.Cmd
	dir      string
}

// Start runs a member named name on two free loopback ports, with its data
// in a temporary directory that Stop removes. Short heartbeat and election
// settings keep its start quick; it is killed if the test binary dies.
func Start(name string) (*Member, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		bin = "/usr/bin/etcd"
		if _, err := os.Stat(bin); err != nil {
			return nil, ErrNoEtcd
		}
	}
	dir, err := os.MkdirTemp("", "sigbase-etcd-"+name)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	logPath := filepath.Join(dir, "etcd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--name", name, "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", name+"="+peer, "--heartbeat-interval", "50", "--election-timeout", "500")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the tests
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	m := &Member{Endpoint: client, cmd: cmd, dir: dir}
	if err := m.waitReady(); err != nil {
		log, _ := os.ReadFile(logPath)
		m.Stop()
		return nil, fmt.Errorf("etcd on %s: %w\n%s", client, err, log)
	}
	return m, nil
}

func (m *Member) waitReady() error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	m.Client = cli
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

// Stop kills the member and removes its data.
func (m *Member) Stop() {
	if m.Client != nil {
		m.Client.Close()
	}
	m.cmd.Process.Kill()
	m.cmd.Wait()
	os.RemoveAll(m.dir)
}

// freePorts finds n distinct free loopback ports, holding each until all
// are found.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
