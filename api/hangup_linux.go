package api

import (
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// hangups notices when the peer of a taken-over connection goes away, for
// all of them in one goroutine: twice a second it polls their descriptors
// for POLLRDHUP, so a departed watcher frees its slot, starts its room's TTL
// clock and its onDisconnect grace within half a second, without a reader
// goroutine per connection.
type hangups struct {
	mu      sync.Mutex
	conns   map[int32]chan struct{} // descriptor → closed when its peer hung up
	started bool
}

// watch registers a connection; gone closes when its peer hangs up. stop
// must be called before the connection is closed.
func (h *hangups) watch(conn net.Conn) (gone <-chan struct{}, stop func()) {
	fd := int32(-1)
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			_ = raw.Control(func(d uintptr) { fd = int32(d) })
		}
	}
	if fd < 0 {
		return nil, func() {}
	}
	ch := make(chan struct{})
	h.mu.Lock()
	if h.conns == nil {
		h.conns = make(map[int32]chan struct{})
	}
	h.conns[fd] = ch
	if !h.started {
		h.started = true
		go h.poll()
	}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		if h.conns[fd] == ch {
			delete(h.conns, fd)
		}
		h.mu.Unlock()
	}
}

// hangupPoll is how often hung-up connections are looked for: one poll(2)
// over every taken-over connection.
const hangupPoll = 500 * time.Millisecond

// poll runs while connections are registered.
func (h *hangups) poll() {
	var fds []unix.PollFd
	for {
		time.Sleep(hangupPoll)
		h.mu.Lock()
		if len(h.conns) == 0 {
			h.started = false
			h.mu.Unlock()
			return
		}
		fds = fds[:0]
		for fd := range h.conns {
			fds = append(fds, unix.PollFd{Fd: fd, Events: unix.POLLRDHUP})
		}
		h.mu.Unlock()
		if _, err := unix.Poll(fds, 0); err != nil {
			continue
		}
		h.mu.Lock()
		for _, p := range fds {
			if p.Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
				if ch, ok := h.conns[p.Fd]; ok {
					close(ch)
					delete(h.conns, p.Fd)
				}
			}
		}
		h.mu.Unlock()
	}
}
