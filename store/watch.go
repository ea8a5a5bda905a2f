package store

import (
	"fmt"
	"sync"
	"time"
)

// Catch-up reads the log in pages, so no read stays open long.
const (
	catchUpPage = 256
	// maxQueuedBytes bounds the changes queued for one watcher, besides the
	// count in Options.WatchQueue.
	maxQueuedBytes = 16 << 20
)

// Watcher follows the changes of one location. Ready signals when Next may
// have events; Next returns them in revision order, none twice. The first
// events are a snapshot (a put of "/" whose Rev is the revision it reflects),
// or, when resuming, the logged changes after the resume point.
type Watcher struct {
	s     *Store
	at    Path
	ready chan struct{} // holds a token while Next may have work

	mu          sync.Mutex // guards the fields below; taken by publish
	queue       []*Change  // committed changes not yet taken by Next
	queuedBytes int
	evicted     bool
	closed      bool

	// owned by the goroutine calling Next
	mode     watchMode
	cursor   uint64 // revision up to which every change was handled
	replayed bool
	spare    []*Change // the queue live took last time, emptied: the next queue
	events   []Event   // what live returned last time, reused
}

// reuseLimit bounds the buffers live keeps for reuse, so a burst's are not
// kept for the watcher's life.
const reuseLimit = 16

type watchMode uint8

const (
	modeSnapshot watchMode = iota // next: read a snapshot
	modeCatchUp                   // next: read a page of the log after cursor
	modeLive                      // next: take queued changes
)

// Watch starts watching a location. With resume set it replays the logged
// changes after revision `after`, or, when the log cannot prove it holds
// all of them (room deleted or re-created since, log trimmed, `after` in the
// future), starts with a snapshot. It registers for live changes before
// reading anything, so no commit falls between catch-up and live delivery.
func (s *Store) Watch(at Path, after uint64, resume bool) (*Watcher, error) {
	if err := at.check(); err != nil {
		return nil, err
	}
	w := &Watcher{s: s, at: at, ready: make(chan struct{}, 1), mode: modeSnapshot}
	if resume {
		w.mode, w.cursor = modeCatchUp, after
	}
	if err := s.hub.add(w); err != nil {
		return nil, err
	}
	w.signal()
	return w, nil
}

// Ready receives when Next may have events or an error.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Replayed reports whether the watcher resumed from the log rather than
// starting with a snapshot. It is valid after the first Next.
func (w *Watcher) Replayed() bool { return w.replayed }

// Next returns the events available now (possibly none). ErrEvicted means the
// watcher fell too far behind; ErrClosed that the store is closing. The slice
// is valid until the next call; live events keep no allocation per watcher.
func (w *Watcher) Next() ([]Event, error) {
	switch w.mode {
	case modeSnapshot:
		return w.snapshot()
	case modeCatchUp:
		return w.catchUp()
	}
	return w.live()
}

// Close stops the watcher.
func (w *Watcher) Close() {
	w.s.hub.remove(w)
}

func (w *Watcher) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

func (w *Watcher) snapshot() ([]Event, error) {
	ev, err := w.s.eng.Snapshot(w.at)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", w.at, err)
	}
	w.mode, w.cursor = modeLive, ev.Rev
	w.signal() // changes may have queued meanwhile
	return []Event{ev}, nil
}

// catchUp reads the next page of logged changes after the cursor, falling
// back to a snapshot when the log cannot prove it is complete.
func (w *Watcher) catchUp() ([]Event, error) {
	changes, provable, more, err := w.s.eng.ChangesAfter(w.at.Room, w.cursor, catchUpPage)
	if err != nil {
		return nil, fmt.Errorf("catch up %s after %d: %w", w.at, w.cursor, err)
	}
	if !provable {
		return w.snapshot()
	}
	w.replayed = true
	var events []Event
	for _, c := range changes {
		if ev, ok := c.eventFor(w.at); ok {
			events = append(events, ev)
		}
		w.cursor = c.rev
	}
	if !more {
		// Everything committed before this read is delivered; everything
		// after it was queued, since the watcher registered first.
		w.mode = modeLive
	}
	w.signal()
	return events, nil
}

func (w *Watcher) live() ([]Event, error) {
	w.mu.Lock()
	queue := w.queue
	w.queue, w.queuedBytes, w.spare = w.spare, 0, nil // offers go on in the spare buffer
	evicted, closed := w.evicted, w.closed
	w.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case evicted:
		return nil, ErrEvicted
	}
	clear(w.events) // the last call's, valid until now
	events := w.events[:0]
	for _, c := range queue {
		if c.rev <= w.cursor {
			continue
		}
		w.cursor = c.rev
		if ev, ok := c.sharedEventFor(w.at); ok {
			events = append(events, ev)
		}
	}
	w.keep(queue, events)
	return events, nil
}

// keep holds small buffers of live for its next call: the queue emptied
// (it pins no change), the events as returned (valid until then).
func (w *Watcher) keep(queue []*Change, events []Event) {
	w.spare, w.events = nil, nil
	if cap(queue) <= reuseLimit {
		clear(queue)
		w.spare = queue[:0]
	}
	if cap(events) <= reuseLimit {
		w.events = events
	}
}

// evict drops the watcher's queue; its next Next returns ErrEvicted.
func (w *Watcher) evict() {
	w.mu.Lock()
	if !w.closed {
		w.evicted, w.queue, w.queuedBytes = true, nil, 0
	}
	w.mu.Unlock()
	w.signal()
}

// offer queues a committed change; a watcher whose queue is full is evicted
// instead, so it never holds up the writer.
func (w *Watcher) offer(c *Change, limit int) {
	if !w.at.Contains(c.at) && !c.at.Contains(w.at) {
		return // another branch of the room
	}
	w.mu.Lock()
	switch {
	case w.evicted || w.closed:
	case len(w.queue) >= limit || w.queuedBytes >= maxQueuedBytes:
		w.evicted, w.queue, w.queuedBytes = true, nil, 0
	default:
		w.queue = append(w.queue, c)
		w.queuedBytes += c.size()
	}
	w.mu.Unlock()
	w.signal()
}

// Hub holds the watchers of each room on this node; an engine hands it
// committed changes.
type Hub struct {
	queueLimit int    // static
	eng        Engine // static once the store is open

	mu       sync.Mutex
	rooms    map[string]*roomFeed
	lastLeft map[string]time.Time // when a room's last watcher left, for its TTL
	watchers int
	closed   bool
}

// roomFeed is one room's watchers on this node, and the engine's feed of
// its changes.
type roomFeed struct {
	watchers map[*Watcher]struct{}
	ready    chan struct{} // closed once the feed is up (or failed: err)
	err      error
	stop     func() // ends the feed; set before ready closes
}

func newHub(queueLimit int) *Hub {
	return &Hub{queueLimit: queueLimit, rooms: make(map[string]*roomFeed), lastLeft: make(map[string]time.Time)}
}

// add registers a watcher. The first watcher of a room starts the
// engine's feed for it (outside the lock: it may take a round trip); the
// others wait for it, so nobody reads before changes flow.
func (h *Hub) add(w *Watcher) error {
	room := w.at.Room
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	rf := h.rooms[room]
	first := rf == nil
	if first {
		rf = &roomFeed{watchers: make(map[*Watcher]struct{}), ready: make(chan struct{})}
		h.rooms[room] = rf
	}
	rf.watchers[w] = struct{}{}
	h.watchers++
	h.mu.Unlock()
	if first {
		stop, err := h.eng.Watched(room)
		h.mu.Lock()
		rf.stop, rf.err = stop, err
		h.mu.Unlock()
		close(rf.ready)
	}
	<-rf.ready
	if rf.err != nil {
		h.remove(w)
		return rf.err
	}
	return nil
}

func (h *Hub) remove(w *Watcher) {
	h.mu.Lock()
	rf := h.rooms[w.at.Room]
	if rf == nil {
		h.mu.Unlock()
		return
	}
	if _, ok := rf.watchers[w]; !ok {
		h.mu.Unlock()
		return
	}
	delete(rf.watchers, w)
	h.watchers--
	var stop func()
	if len(rf.watchers) == 0 {
		delete(h.rooms, w.at.Room)
		h.lastLeft[w.at.Room] = time.Now()
		stop = rf.stop
	}
	h.mu.Unlock()
	w.mu.Lock()
	w.closed, w.queue = true, nil
	w.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Publish hands committed changes, in revision order, to their watchers.
// It never waits on a watcher: one whose queue is full is evicted.
func (h *Hub) Publish(changes []*Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range changes {
		if rf := h.rooms[c.at.Room]; rf != nil {
			for w := range rf.watchers {
				w.offer(c, h.queueLimit)
			}
		}
	}
}

// EvictRoom drops every watcher of a room whose feed broke: they resume
// from their last event id, or get a snapshot.
func (h *Hub) EvictRoom(room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rf := h.rooms[room]; rf != nil {
		for w := range rf.watchers {
			w.evict()
		}
	}
}

// Watching reports whether the room has watchers on this node, and when
// its last watcher left (zero if none did since ForgetLeftBefore).
func (h *Hub) Watching(room string) (bool, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[room] != nil, h.lastLeft[room]
}

// ForgetLeftBefore drops departure times that no longer delay any expiry.
func (h *Hub) ForgetLeftBefore(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for room, left := range h.lastLeft {
		if left.Before(t) {
			delete(h.lastLeft, room)
		}
	}
}

func (h *Hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.watchers
}

// close ends every watcher with ErrClosed.
func (h *Hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, rf := range h.rooms {
		for w := range rf.watchers {
			w.mu.Lock()
			w.closed = true
			w.mu.Unlock()
			w.signal()
		}
	}
}
