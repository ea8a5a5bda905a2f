package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigbase/sigbase/store"
)

// onDisconnect (docs/API.md): a watch names a session and the writes to make
// in its room when the session's last stream ends. After a grace period
// they are committed, unless a stream of the same session came back first,
// as EventSource does on its own after a network blip.

// Bounds of the actions one stream may register.
const (
	maxDisconnectActions = 4
	maxDisconnectBytes   = 1024
)

var sessionName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// disconnectAction is one registered write: a set, or a delete when value
// is nil.
type disconnectAction struct {
	at    store.Path
	value []byte
}

// wireAction is an action as a client writes it in ?ondisconnect=.
type wireAction struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

// parseDisconnect reads a watch's session and actions; session "" means
// none was given.
func parseDisconnect(st *store.Store, room string, q map[string][]string) (session string, actions []disconnectAction, patch []byte, err error) {
	sessions, specs := q["session"], q["ondisconnect"]
	switch {
	case len(sessions) == 0 && len(specs) == 0:
		return "", nil, nil, nil
	case len(sessions) == 0:
		return "", nil, nil, badRequest("ondisconnect needs a session=<id>")
	case !sessionName.MatchString(sessions[0]):
		return "", nil, nil, badRequest("session must match [A-Za-z0-9_-]{1,64}")
	case len(specs) > maxDisconnectActions:
		return "", nil, nil, badRequest("at most " + strconv.Itoa(maxDisconnectActions) + " ondisconnect actions per stream")
	}
	for _, spec := range specs {
		if len(spec) > maxDisconnectBytes {
			return "", nil, nil, badRequest("ondisconnect action over " + strconv.Itoa(maxDisconnectBytes) + " bytes")
		}
		var a wireAction
		dec := json.NewDecoder(strings.NewReader(spec))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil {
			return "", nil, nil, badRequest(`ondisconnect must be {"op":"delete","path":"key[/child]"} or {"op":"set","path":…,"value":…}`)
		}
		key, child, _ := strings.Cut(strings.TrimPrefix(a.Path, "/"), "/")
		at, err := store.NewPath(room, key, child)
		if err != nil || key == "" {
			return "", nil, nil, badRequest("ondisconnect path " + strconv.Quote(a.Path) + ": want key or key/child of the room")
		}
		act := disconnectAction{at: at}
		switch a.Op {
		case "delete":
			if a.Value != nil {
				return "", nil, nil, badRequest("ondisconnect delete takes no value")
			}
		case "set":
			if a.Value == nil {
				return "", nil, nil, badRequest("ondisconnect set needs a value")
			}
			if err := st.CheckPut(at, a.Value); err != nil {
				return "", nil, nil, err
			}
			act.value = a.Value
		default:
			return "", nil, nil, badRequest(`ondisconnect op must be "set" or "delete"`)
		}
		for _, prev := range actions {
			if overlaps(prev.at, at) {
				return "", nil, nil, badRequest("ondisconnect paths " + strconv.Quote(prev.at.String()) + " and " + strconv.Quote(at.String()) + " overlap")
			}
		}
		actions = append(actions, act)
	}
	if len(actions) > 0 {
		patch = patchOf(actions)
	}
	return sessions[0], actions, patch, nil
}

// overlaps reports whether one location is the other or below it: such
// actions could not be one write.
func overlaps(a, b store.Path) bool {
	return a.Key == b.Key && (a.Child == "" || b.Child == "" || a.Child == b.Child)
}

// patchOf is a session's actions as one room PATCH: members named key or
// key/child, null for a delete.
func patchOf(actions []disconnectAction) []byte {
	b := []byte{'{'}
	for i, a := range actions {
		if i > 0 {
			b = append(b, ',')
		}
		name := a.at.Key
		if a.at.Child != "" {
			name += "/" + a.at.Child
		}
		b = strconv.AppendQuote(b, name) // names are [A-Za-z0-9_-/]: no escapes
		b = append(b, ':')
		if a.value == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, a.value...)
		}
	}
	return append(b, '}')
}

// presence keeps the sessions of this server's streams and their pending
// actions.
type presence struct {
	st    *store.Store
	grace time.Duration
	log   *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	stopped  bool // shutting down: actions stay recorded for the next start
}

type session struct {
	room, id string
	patch    []byte // the actions as one room PATCH; nil: none
	streams  int
	timer    *time.Timer // pending: the actions run when it fires
	gen      uint64      // counts schedules, so a stopped timer's late firing is ignored
}

func newPresence(st *store.Store, grace time.Duration, log *slog.Logger) *presence {
	return &presence{st: st, grace: grace, log: log, sessions: map[string]*session{}}
}

// recover schedules the sessions recorded before a restart: each is
// pending from now, unless its stream comes back within the grace period.
func (p *presence) recover() {
	records, err := p.st.Disconnects()
	if err != nil {
		p.log.Error("reading recorded onDisconnect actions", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range records {
		s := &session{room: r.Room, id: r.Session, patch: r.Patch}
		p.sessions[r.Room+"\x00"+r.Session] = s
		p.schedule(s)
	}
}

// open registers a stream of a session: it cancels the session's pending
// actions and records the stream's own (none forgets them), durably,
// before the stream is served. The returned func ends the stream's part.
func (p *presence) open(room, id string, patch []byte) (func(), error) {
	var err error
	if patch != nil {
		err = p.st.SaveDisconnect(room, id, patch, p.grace)
	} else {
		err = p.st.DropDisconnect(room, id)
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := room + "\x00" + id
	s := p.sessions[key]
	if s == nil {
		s = &session{room: room, id: id}
		p.sessions[key] = s
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.patch = patch
	s.streams++
	var once sync.Once
	return func() { once.Do(func() { p.closed(s) }) }, nil
}

// closed ends one stream of s; the last one starts the grace period.
func (p *presence) closed(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.streams--; s.streams > 0 || p.stopped {
		return
	}
	if s.patch == nil {
		delete(p.sessions, s.room+"\x00"+s.id)
		return
	}
	// The record now outlives this server by the grace period at most (on
	// etcd its lease runs out), so a node that dies still has it applied.
	p.st.ReleaseDisconnect(s.room, s.id)
	p.schedule(s)
}

// schedule makes s pending; p.mu is held. The generation tells the timer
// that fires whether it is still the session's.
func (p *presence) schedule(s *session) {
	s.gen++
	gen := s.gen
	s.timer = time.AfterFunc(p.grace, func() { p.fire(s, gen) })
}

// fire commits a session's actions, as one PATCH of the room, when its grace period ran out with no
// stream back.
func (p *presence) fire(s *session, gen uint64) {
	p.mu.Lock()
	if s.gen != gen || s.timer == nil || s.streams > 0 || p.stopped {
		p.mu.Unlock()
		return
	}
	delete(p.sessions, s.room+"\x00"+s.id)
	patch := s.patch
	p.mu.Unlock()
	// Whoever claims the record applies it: on etcd another node may have
	// taken the session over, or applied it when our lease ran out.
	mine, err := p.st.ClaimDisconnect(s.room, s.id)
	if err != nil || !mine {
		if err != nil {
			p.log.Warn("claiming onDisconnect actions", "room", s.room, "session", s.id, "err", err)
		}
		return
	}
	// One write, one revision: watchers see the leave at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.st.Patch(ctx, store.Path{Room: s.room}, patch, store.Cond{}); err != nil {
		p.log.Warn("onDisconnect write failed", "room", s.room, "session", s.id, "err", err)
	}
}

// stop keeps every recorded action for the next start: a graceful shutdown
// is not a disconnect.
func (p *presence) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, s := range p.sessions {
		if s.timer != nil {
			s.timer.Stop()
		}
	}
}
