package api

import (
	"net/http"
	"sync"
)

// streamGate bounds open streams in total, per client IP and per room, and
// watches taken-over connections for hang-ups.
type streamGate struct {
	max, perIP, perRoom int // static
	hangups             hangups

	mu    sync.Mutex
	total int
	ips   map[string]int
	rooms map[string]int
}

func newStreamGate(max, perIP, perRoom int) *streamGate {
	return &streamGate{
		max: max, perIP: perIP, perRoom: perRoom,
		ips: make(map[string]int), rooms: make(map[string]int),
	}
}

// acquire takes a stream slot; release gives it back.
func (g *streamGate) acquire(room, ip string) (release func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.total >= g.max:
		return nil, &apiError{status: http.StatusServiceUnavailable, msg: "too many open streams on this server", retryAfter: 5}
	case g.ips[ip] >= g.perIP:
		return nil, &apiError{status: http.StatusTooManyRequests, msg: "too many open streams from your address", retryAfter: 5}
	case g.rooms[room] >= g.perRoom:
		return nil, &apiError{status: http.StatusTooManyRequests, msg: "too many open streams on this room", retryAfter: 5}
	}
	g.total++
	g.ips[ip]++
	g.rooms[room]++
	var once sync.Once
	return func() { once.Do(func() { g.release(room, ip) }) }, nil
}

func (g *streamGate) release(room, ip string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.ips[ip]--; g.ips[ip] == 0 {
		delete(g.ips, ip)
	}
	if g.rooms[room]--; g.rooms[room] == 0 {
		delete(g.rooms, room)
	}
}
