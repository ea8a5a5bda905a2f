package storetest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigbase/sigbase/store"
	"github.com/sigbase/sigbase/store/internal/model"
)

// ApplyEvent applies a watcher's event to its copy (decoded JSON, as the
// model holds it) of the value at a location of depth 0 (room), 1 (key) or 2
// (child): a put sets the event's path, a patch each member below it.
func ApplyEvent(t testing.TB, local any, depth int, ev store.Event) any {
	t.Helper()
	segs := model.SplitPath(ev.Path)
	if !ev.Patch {
		return model.SetAt(local, depth, segs, Decode(t, ev.Data))
	}
	members, ok := Decode(t, ev.Data).(map[string]any)
	if !ok {
		t.Fatalf("patch event %v: data is not an object", ev)
	}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		local = model.SetAt(local, depth, slices.Concat(segs, strings.Split(name, "/")), members[name])
	}
	return local
}

// incarnation is what the model knows of a room's change log: the revision
// that created the room and the revisions logged since.
type incarnation struct {
	created uint64
	log     []uint64
}

type modelConfig struct {
	name   string
	seed   uint64
	ops    int
	limits store.Limits
	// exactFloor: the log is trimmed by entry count only, so the model knows
	// exactly which resumes must replay.
	exactFloor bool
}

// RunModel runs the model test against the engine of h, as subtests: four
// seeds of 500 writes (h.Ops), two with the default limits, one with a
// 10-entry log, one with a 2 KiB log.
func RunModel(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("storetest.RunModel: Harness.Open is nil")
	}
	ops := cmp.Or(h.Ops, 500)
	for _, cfg := range []modelConfig{
		{"seed1", 1, ops, store.Limits{}, true},
		{"seed2", 2, ops, store.Limits{}, true},
		{"seed3-log10", 3, ops, store.Limits{MaxLogEntries: 10}, true}, // rooms rarely reach 50 entries before a delete
		{"seed4-logbytes", 4, ops, store.Limits{MaxLogBytes: 2048}, false},
	} {
		if h.FullHistory {
			cfg.exactFloor = true // nothing is trimmed: the floor is 0
		}
		t.Run(cfg.name, func(t *testing.T) {
			if !h.Serial {
				t.Parallel()
			}
			newModelRun(t, h, cfg).run()
		})
	}
}

type modelWatcher struct {
	at      store.Path
	w       *store.Watcher
	local   any
	lastRev uint64
	// changed is the revision of the last write that changed the value at
	// the location: the watcher must have an event at or after it.
	changed uint64
}

type modelRun struct {
	t      *testing.T
	h      Harness
	cfg    modelConfig
	s      *store.Store
	rng    *rand.Rand
	maxLog int

	rooms   map[string]any // the model
	base    uint64         // the revision before the first write
	rev     uint64
	history []map[string]any // history[rev-base] = the rooms after rev
	incs    map[string]*incarnation
	pushed  map[store.Path][]string // push ids under each key
	lastID  string

	counts map[string]int // what the run exercised, logged at the end

	locs     []store.Path // every location checked after each op
	prevVal  map[store.Path]any
	prevETag map[store.Path]uint64
	watchers []*modelWatcher
}

var (
	modelRooms    = []string{"r0", "r1", "r2"}
	modelKeys     = []string{"a", "b", "c"}
	modelChildren = []string{"x", "y", "z", "0", "1", "3"} // indices: keys that read as arrays
)

func newModelRun(t *testing.T, h Harness, cfg modelConfig) *modelRun {
	m := &modelRun{
		t: t, h: h, cfg: cfg,
		s:        h.Open(t, store.Options{Limits: cfg.limits}),
		rng:      rand.New(rand.NewPCG(cfg.seed, cfg.seed*0x9e3779b97f4a7c15+1)),
		maxLog:   cmp.Or(cfg.limits.MaxLogEntries, store.DefaultOptions().Limits.MaxLogEntries),
		rooms:    map[string]any{},
		history:  []map[string]any{{}},
		incs:     map[string]*incarnation{},
		pushed:   map[store.Path][]string{},
		prevVal:  map[store.Path]any{},
		prevETag: map[store.Path]uint64{},
		counts:   map[string]int{},
	}
	m.base = m.stats()
	m.rev = m.base
	for _, r := range append(slices.Clone(modelRooms), "ghost") { // ghost: watched, never written
		m.locs = append(m.locs, store.Path{Room: r})
		for _, k := range modelKeys {
			m.locs = append(m.locs, store.Path{Room: r, Key: k})
			for _, c := range modelChildren {
				m.locs = append(m.locs, store.Path{Room: r, Key: k, Child: c})
			}
		}
	}
	for _, at := range []string{"r0", "r1", "r2", "ghost", "r0/a", "r1/b", "r2/c", "ghost/a", "r0/a/x", "r1/b/y", "r2/a/z", "ghost/a/x"} {
		// The snapshot is read by the first Next: take it before any write.
		sw, err := m.s.Watch(Loc(t, at), 0, false)
		if err != nil {
			t.Fatalf("Watch(%s): %v", at, err)
		}
		t.Cleanup(sw.Close)
		w := &modelWatcher{at: Loc(t, at), w: sw, lastRev: m.base}
		evs := m.events(Drain(t, w.w))
		if len(evs) != 1 || evs[0].Path != "/" || evs[0].Patch || evs[0].Rev != m.base || string(evs[0].Data) != "null" {
			t.Fatalf("watcher of %s: first events %v, want a snapshot %d:put / null", at, evs, m.base)
		}
		m.watchers = append(m.watchers, w)
	}
	return m
}

func (m *modelRun) run() {
	const checkEvery = 50
	for i := range m.cfg.ops {
		m.step(i)
		if m.t.Failed() {
			m.t.FailNow()
		}
		if (i+1)%checkEvery == 0 || i == m.cfg.ops-1 {
			m.checkpoint(i == m.cfg.ops-1)
		}
	}
	m.t.Logf("rev %d (base %d), %v", m.rev, m.base, m.counts)
	// The run must have exercised what it checks.
	for _, what := range []string{"array read", "put", "delete", "push", "patch", "refused", "condition failed", "condition held", "replay", "snapshot", "replayed events"} {
		if m.counts[what] == 0 {
			m.t.Errorf("the run never exercised %q", what)
		}
	}
	if !m.h.FullHistory && (m.cfg.limits.MaxLogEntries > 0 || m.cfg.limits.MaxLogBytes > 0) && m.counts["trimmed log"] == 0 {
		m.t.Errorf("the log was never trimmed")
	}
}

// modelOp is one generated write.
type modelOp struct {
	kind    string // put, delete, push, patch
	at      store.Path
	body    []byte
	cond    string // "", "right", "wrong", "absent"
	wantErr error  // a write the store must refuse
}

func (o modelOp) String() string {
	return fmt.Sprintf("%s %s %s cond=%s", o.kind, o.at, o.body, o.cond)
}

func (m *modelRun) step(i int) {
	t := m.t
	op := m.genOp()
	condAt := op.at
	cur, err := m.get(condAt)
	if err != nil {
		t.Fatalf("op %d: Get(%s): %v", i, condAt, err)
	}
	var cond store.Cond
	switch op.cond {
	case "right":
		cond = store.Cond{Set: true, Rev: m.exact(cur.Rev)}
	case "absent":
		cond = store.Cond{Set: true}
	case "wrong":
		cond = store.Cond{Set: true, Rev: m.exact(cur.Rev + 1 + m.rng.Uint64N(5))}
		if cur.Rev > 0 && m.rng.IntN(2) == 0 {
			cond.Rev = m.exact(m.rng.Uint64N(cur.Rev))
		}
	}
	modelCur := model.GetAt(m.rooms[condAt.Room], model.Segments(condAt.Key, condAt.Child))
	condHolds := op.cond == "" || op.cond == "right" || op.cond == "absent" && modelCur == nil

	var res store.Result
	ctx := t.Context()
	switch op.kind {
	case "put":
		res, err = m.s.Put(ctx, op.at, op.body, cond)
	case "delete":
		res, err = m.s.Delete(ctx, op.at, cond)
	case "push":
		res, err = m.s.Push(ctx, op.at, op.body, cond)
	case "patch":
		res, err = m.s.Patch(ctx, op.at, op.body, cond)
	}
	res.Rev, res.ETag = m.mrev(res.Rev), m.mrev(res.ETag)
	switch {
	case op.wantErr != nil:
		m.counts["refused"]++
		if !errors.Is(err, op.wantErr) {
			t.Fatalf("op %d %v: err %v, want %v", i, op, err, op.wantErr)
		}
		m.checkUnchanged(i, op)
		return
	case !condHolds:
		m.counts["condition failed"]++
		var ce *store.ConditionError
		if !errors.As(err, &ce) {
			t.Fatalf("op %d %v: err %v, want a *ConditionError", i, op, err)
		}
		if want := model.RenderAt(condAt.Depth(), modelCur); !reflect.DeepEqual(Decode(t, ce.Value), want) || m.mrev(ce.Rev) != cur.Rev {
			t.Errorf("op %d %v: ConditionError{%s, %d}, want {%s, %d}", i, op, ce.Value, ce.Rev, model.MustJSON(want), cur.Rev)
		}
		m.checkUnchanged(i, op)
		return
	case err != nil:
		t.Fatalf("op %d %v: %v", i, op, err)
	}

	// Apply the write to the model.
	m.counts[op.kind]++
	if op.cond != "" {
		m.counts["condition held"]++
	}
	room := op.at.Room
	existed := m.rooms[room] != nil
	var wantValue any
	switch op.kind {
	case "put", "delete":
		var v any
		if op.kind == "put" {
			v = Decode(t, op.body)
		}
		m.set(room, model.Segments(op.at.Key, op.at.Child), v)
		wantValue = model.RenderAt(op.at.Depth(), model.GetAt(m.rooms[room], model.Segments(op.at.Key, op.at.Child)))
	case "push":
		if !model.ValidPushID(res.Name) || res.Name <= m.lastID {
			t.Errorf("op %d %v: push id %q, want a push id after %q", i, op, res.Name, m.lastID)
		}
		m.lastID = res.Name
		child := store.Path{Room: room, Key: op.at.Key, Child: res.Name}
		m.pushed[op.at] = append(m.pushed[op.at], res.Name)
		m.locs = append(m.locs, child)
		v := Decode(t, op.body)
		m.set(room, model.Segments(child.Key, child.Child), v)
		wantValue = model.RenderAt(2, model.NormAt(2, v))
	case "patch":
		members := Decode(t, op.body).(map[string]any)
		want := map[string]any{}
		for _, name := range slices.Sorted(maps.Keys(members)) {
			segs := slices.Concat(model.Segments(op.at.Key, op.at.Child), strings.Split(name, "/"))
			m.set(room, segs, members[name])
			want[name] = model.RenderAt(len(segs), model.NormAt(len(segs), members[name]))
		}
		wantValue = want
	}
	if got := Decode(t, res.Value); !reflect.DeepEqual(got, wantValue) || !model.IsCompact(res.Value) {
		t.Errorf("op %d %v: Result.Value %s, want %s", i, op, res.Value, model.MustJSON(wantValue))
	}
	if !existed && m.rooms[room] == nil && m.h.NoOpKeepsRevision {
		// Nothing was stored and nothing is: no commit.
		m.counts["no-op"]++
		if res.Rev != m.rev {
			t.Fatalf("op %d %v leaves room %s absent: Rev %d, want the current %d (no revision)", i, op, room, res.Rev, m.rev)
		}
	} else {
		if res.Rev != m.rev+1 {
			t.Fatalf("op %d %v: Rev %d, want %d (strictly increasing, no gap)", i, op, res.Rev, m.rev+1)
		}
		m.rev = res.Rev
		if inc := m.incs[room]; m.rooms[room] == nil {
			delete(m.incs, room)
		} else {
			if !existed || inc == nil {
				inc = &incarnation{created: m.rev}
				m.incs[room] = inc
			}
			inc.log = append(inc.log, m.rev)
		}
		m.history = append(m.history, maps.Clone(m.rooms))
	}

	// ETag of the written location (the key, for a push).
	target, _ := m.get(op.at)
	if res.ETag != target.Rev || (res.ETag == 0) != (model.GetAt(m.rooms[room], model.Segments(op.at.Key, op.at.Child)) == nil) || res.ETag != 0 && res.ETag != res.Rev {
		t.Errorf("op %d %v: ETag %d, location rev %d (value %s)", i, op, res.ETag, target.Rev, target.Data)
	}
	if got := m.stats(); got != m.rev {
		t.Errorf("op %d: Stats().Revision %d, want %d", i, got, m.rev)
	}
	m.checkAll(i, op)
}

func (m *modelRun) set(room string, segs []string, v any) {
	if nv := model.SetAt(m.rooms[room], 0, segs, v); nv == nil {
		delete(m.rooms, room)
	} else {
		m.rooms[room] = nv
	}
}

// checkAll compares every location with the model after a committed write.
func (m *modelRun) checkAll(i int, op modelOp) {
	t := m.t
	etags := map[store.Path]uint64{}
	for _, p := range m.locs {
		v, err := m.get(p)
		if err != nil {
			t.Fatalf("op %d: Get(%s): %v", i, p, err)
		}
		want := model.RenderAt(p.Depth(), model.GetAt(m.rooms[p.Room], model.Segments(p.Key, p.Child)))
		if got := Decode(t, v.Data); !reflect.DeepEqual(got, want) {
			t.Fatalf("op %d %v: Get(%s) = %s, want %s", i, op, p, v.Data, model.MustJSON(want))
		}
		if !model.IsCompact(v.Data) {
			t.Errorf("op %d: Get(%s) = %q, not compact", i, p, v.Data)
		}
		if v.Data[0] == '[' {
			m.counts["array read"]++
		}
		prev := m.prevETag[p]
		switch {
		case (v.Rev == 0) != (want == nil):
			t.Errorf("op %d %v: %s rev %d with value %s: want 0 exactly when absent", i, op, p, v.Rev, v.Data)
		case !reflect.DeepEqual(m.prevVal[p], want) && want != nil && v.Rev != m.rev:
			t.Errorf("op %d %v: %s changed to %s, rev %d, want %d", i, op, p, v.Data, v.Rev, m.rev)
		case !op.at.Contains(p) && !p.Contains(op.at) && v.Rev != prev:
			t.Errorf("op %d %v: unrelated %s rev %d -> %d", i, op, p, prev, v.Rev)
		case v.Rev != prev && v.Rev != m.rev && v.Rev != 0:
			t.Errorf("op %d %v: %s rev %d -> %d, want %d, 0 or unchanged", i, op, p, prev, v.Rev, m.rev)
		}
		etags[p] = v.Rev
		if !reflect.DeepEqual(m.prevVal[p], want) {
			for _, w := range m.watchers {
				if w.at == p {
					w.changed = m.rev
				}
			}
		}
		m.prevVal[p] = want
	}
	// A location's revision is its last change at or below it.
	for p, rev := range etags {
		up := p
		switch {
		case p.Child != "":
			up.Child = ""
		case p.Key != "":
			up.Key = ""
		default:
			continue
		}
		if etags[up] < rev {
			t.Errorf("op %d %v: %s rev %d is above its parent %s rev %d", i, op, p, rev, up, etags[up])
		}
	}
	m.prevETag = etags
}

// checkUnchanged: a refused write changed nothing.
func (m *modelRun) checkUnchanged(i int, op modelOp) {
	t := m.t
	if got := m.stats(); got != m.rev {
		t.Fatalf("op %d %v refused, but the revision moved %d -> %d", i, op, m.rev, got)
	}
	for _, p := range m.locs {
		v, _ := m.get(p)
		if !reflect.DeepEqual(Decode(t, v.Data), m.prevVal[p]) || v.Rev != m.prevETag[p] {
			t.Fatalf("op %d %v refused, but %s is %s rev %d, was %s rev %d", i, op, p, v.Data, v.Rev, model.MustJSON(m.prevVal[p]), m.prevETag[p])
		}
	}
}

// floor is the revision after which the room's log holds every change, as
// the model expects it; ok is false when the room does not exist.
func (m *modelRun) floor(room string) (uint64, bool) {
	inc := m.incs[room]
	if inc == nil {
		return 0, false
	}
	if m.h.FullHistory {
		return 0, true
	}
	if n := len(inc.log); n > m.maxLog {
		return inc.log[n-m.maxLog-1], true
	}
	return inc.created - 1, true
}

func (m *modelRun) checkpoint(final bool) {
	t := m.t
	if m.h.Published != nil {
		m.h.Published(t, m.s, m.rev)
	}
	// Watchers open since the start: their copies follow the model.
	timeout := cmp.Or(m.h.PublishTimeout, 10*time.Second)
	for _, w := range m.watchers {
		want := model.GetAt(m.rooms[w.at.Room], model.Segments(w.at.Key, w.at.Child))
		deadline := time.Now().Add(timeout)
		for {
			m.drainWatcher(w)
			if reflect.DeepEqual(w.local, want) && w.lastRev >= w.changed {
				break
			}
			if m.h.Published != nil || time.Now().After(deadline) {
				wait := ""
				if m.h.Published == nil {
					wait = fmt.Sprintf(" after waiting %v", timeout)
				}
				t.Fatalf("at rev %d the watcher of %s holds %s at rev %d%s, want %s (changed at rev %d)",
					m.rev, w.at, model.MustJSON(w.local), w.lastRev, wait, model.MustJSON(want), w.changed)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The engine's bookkeeping of each room agrees with the model and with
	// what is stored.
	for _, room := range modelRooms {
		if m.h.Bookkeeping == nil {
			break
		}
		created, bookFloor, ok := m.h.Bookkeeping(t, m.s, room)
		floor, exists := m.floor(room)
		if ok != exists {
			t.Fatalf("at rev %d room %s has bookkeeping %v, model: exists %v", m.rev, room, ok, exists)
		}
		if !ok {
			continue
		}
		if bookFloor >= created {
			m.counts["trimmed log"]++
		}
		if created != m.incs[room].created || m.cfg.exactFloor && bookFloor != floor {
			t.Fatalf("at rev %d room %s: created %d floor %d, model: created %d floor %d", m.rev, room, created, bookFloor, m.incs[room].created, floor)
		}
	}
	// Resumes: from each k, replay onto the value at k, or a snapshot.
	var resumes []resume
	for _, p := range m.locs {
		if p.Depth() == 2 && !slices.Contains(modelChildren, p.Child) {
			continue // pushed children: covered through their keys
		}
		var ks []uint64
		if final && p.Depth() == 0 {
			if m.base > 1 {
				ks = append(ks, 0) // before the run, as one: no revision there is the run's
			}
			for k := m.base - min(m.base, 1); k <= m.rev+1; k++ {
				ks = append(ks, k)
			}
		} else {
			ks = []uint64{0, m.rev, m.rev + 1, m.rev + 100}
			if f, ok := m.floor(p.Room); ok {
				ks = append(ks, f-1, f, f+1)
				created := m.incs[p.Room].created
				ks = append(ks, created-2, created-1, created)
			}
			for range 4 {
				ks = append(ks, m.base+m.rng.Uint64N(m.rev-m.base+1))
			}
		}
		for _, k := range ks {
			if k > 1<<62 {
				continue // created-2 below zero
			}
			resumes = append(resumes, resume{p: p, k: k})
		}
	}
	m.resumeAll(resumes)
	for i := range resumes {
		m.checkResume(&resumes[i])
	}
}

// resume is one resume checked at a checkpoint: where and after which
// revision, and what the watcher gave.
type resume struct {
	p        store.Path
	k        uint64
	evs      []store.Event
	replayed bool
	err      error
}

// resumeAll opens the watchers of the resumes and reads what each has at
// first, Harness.ParallelResumes at a time.
func (m *modelRun) resumeAll(rs []resume) {
	n := max(1, m.h.ParallelResumes)
	next := make(chan *resume)
	var wg sync.WaitGroup
	for range min(n, len(rs)) {
		wg.Go(func() {
			for r := range next {
				m.resume(r)
			}
		})
	}
	for i := range rs {
		next <- &rs[i]
	}
	close(next)
	wg.Wait()
}

// The model counts one revision a write; an engine's revisions are read
// and given through these (Harness.RevisionScale).

// mrev is the model's revision for an engine's.
func (m *modelRun) mrev(rev uint64) uint64 { return rev / m.scale() }

// exact is the engine's revision of a write at model revision k.
func (m *modelRun) exact(k uint64) uint64 { return k * m.scale() }

// after is the engine's last revision at model revision k: a resume after
// it replays from k's successor.
func (m *modelRun) after(k uint64) uint64 { return k*m.scale() + m.scale() - 1 }

func (m *modelRun) scale() uint64 { return max(1, m.h.RevisionScale) }

func (m *modelRun) get(p store.Path) (store.Value, error) {
	v, err := m.s.Get(p)
	v.Rev = m.mrev(v.Rev)
	return v, err
}

func (m *modelRun) stats() uint64 { return m.mrev(m.s.Stats().Revision) }

func (m *modelRun) events(evs []store.Event) []store.Event {
	for i := range evs {
		evs[i].Rev = m.mrev(evs[i].Rev)
	}
	return evs
}

// resume opens a watcher resuming after r.k and reads its first events:
// the replay, or a snapshot.
func (m *modelRun) resume(r *resume) {
	w, err := m.s.Watch(r.p, m.after(r.k), true)
	if err != nil {
		r.err = fmt.Errorf("Watch(%s, %d): %w", r.p, r.k, err)
		return
	}
	defer w.Close()
	for {
		select {
		case <-w.Ready():
			evs, err := w.Next()
			if err != nil {
				r.err = fmt.Errorf("resume %s after %d: Next: %w", r.p, r.k, err)
				return
			}
			r.evs = append(r.evs, m.events(evs)...)
		default:
			r.replayed = w.Replayed()
			return
		}
	}
}

// drainWatcher applies the events a model watcher has ready to its copy.
func (m *modelRun) drainWatcher(w *modelWatcher) {
	t := m.t
	for _, ev := range m.events(Drain(t, w.w)) {
		if ev.Rev <= w.lastRev {
			t.Fatalf("watcher of %s: rev %d after %d", w.at, ev.Rev, w.lastRev)
		}
		if ev.Rev > m.rev {
			t.Fatalf("watcher of %s: rev %d beyond the last write %d", w.at, ev.Rev, m.rev)
		}
		w.local = ApplyEvent(t, w.local, w.at.Depth(), ev)
		w.lastRev = ev.Rev
	}
}

// roomsAt is the model after revision k; before the run, it is empty.
func (m *modelRun) roomsAt(k uint64) map[string]any {
	return m.history[max(k, m.base)-m.base]
}

// checkResume holds a resume to the model.
func (m *modelRun) checkResume(r *resume) {
	t := m.t
	if r.err != nil {
		t.Fatal(r.err)
	}
	p, k, evs := r.p, r.k, r.evs
	want := model.GetAt(m.rooms[p.Room], model.Segments(p.Key, p.Child))
	floor, exists := m.floor(p.Room)
	if m.cfg.exactFloor {
		if wantReplay := exists && floor <= k && k <= m.rev; r.replayed != wantReplay {
			t.Fatalf("resume %s after %d at rev %d (floor %d, room exists %v): replayed %v, want %v", p, k, m.rev, floor, exists, r.replayed, wantReplay)
		}
	} else if exists && k == m.rev && !r.replayed {
		t.Fatalf("resume %s after the head %d: snapshot, want an empty replay", p, k)
	} else if r.replayed && (!exists || k < m.incs[p.Room].created-1 || k > m.rev) {
		t.Fatalf("resume %s after %d at rev %d: replayed across a re-creation or from the future", p, k, m.rev)
	}
	if !r.replayed {
		m.counts["snapshot"]++
		if len(evs) != 1 || evs[0].Path != "/" || evs[0].Patch || evs[0].Rev != m.rev || !reflect.DeepEqual(Decode(t, evs[0].Data), model.RenderAt(p.Depth(), want)) {
			t.Fatalf("resume %s after %d: %v, want one snapshot %d:put / %s", p, k, evs, m.rev, model.MustJSON(want))
		}
		return
	}
	m.counts["replay"]++
	m.counts["replayed events"] += len(evs)
	local := model.GetAt(m.roomsAt(k)[p.Room], model.Segments(p.Key, p.Child))
	last := k
	for _, ev := range evs {
		if ev.Rev <= last || ev.Rev > m.rev {
			t.Fatalf("resume %s after %d: rev %d after %d (head %d)", p, k, ev.Rev, last, m.rev)
		}
		last = ev.Rev
		local = ApplyEvent(t, local, p.Depth(), ev)
	}
	if !reflect.DeepEqual(local, want) {
		t.Fatalf("resume %s after %d: the value at %d (%s) with %v gives %s, want %s",
			p, k, k, model.MustJSON(model.GetAt(m.roomsAt(k)[p.Room], model.Segments(p.Key, p.Child))), evs, model.MustJSON(local), model.MustJSON(want))
	}
}

// Generators.

func (m *modelRun) pick(names []string) string { return names[m.rng.IntN(len(names))] }

func (m *modelRun) pickChild(room, key string) string {
	if ids := m.pushed[store.Path{Room: room, Key: key}]; len(ids) > 0 && m.rng.IntN(3) == 0 {
		return m.pick(ids)
	}
	return m.pick(modelChildren)
}

// childValue is free-form JSON, sometimes null or {} (a deletion).
func (m *modelRun) childValue() any {
	switch m.rng.IntN(15) {
	case 0:
		return nil
	case 1:
		return map[string]any{}
	case 2:
		return m.rng.IntN(1000)
	case 3:
		return fmt.Sprintf("s%d", m.rng.IntN(100))
	case 4:
		return m.rng.IntN(2) == 0
	case 5:
		return float64(m.rng.IntN(100)) / 8
	case 6:
		return []any{1, "two", nil, map[string]any{}}
	case 7:
		return map[string]any{"candidate": fmt.Sprintf("c%d", m.rng.IntN(50)), "sdpMLineIndex": m.rng.IntN(3), "empty": map[string]any{}, "none": nil}
	case 8:
		return "é\n\"<tag>&\u2028\\"
	case 9:
		return strings.Repeat("v", m.rng.IntN(200))
	case 10:
		return map[string]any{"not a name/ok here": []any{}}
	case 11:
		return []any{nil, "b", []any{nil, map[string]any{"n": nil}, 1}, map[string]any{"0": "a", "2": "c", "5": nil}}
	default:
		return m.rng.IntN(10)
	}
}

// keyValue: a leaf, an object of children, or absent.
func (m *modelRun) keyValue(room, key string) any {
	switch r := m.rng.IntN(10); {
	case r == 0:
		return nil
	case r == 1:
		return map[string]any{}
	case r == 2:
		arr := make([]any, m.rng.IntN(5))
		for i := range arr {
			arr[i] = m.childValue()
		}
		return arr
	case r == 3:
		for {
			if v := m.childValue(); v != nil {
				if _, isMap := v.(map[string]any); !isMap {
					return v
				}
			}
		}
	default:
		obj := map[string]any{}
		for range m.rng.IntN(4) {
			obj[m.pickChild(room, key)] = m.childValue()
		}
		return obj
	}
}

func (m *modelRun) roomValue(room string) any {
	if m.rng.IntN(10) == 0 {
		return nil
	}
	obj := map[string]any{}
	for range m.rng.IntN(4) {
		k := m.pick(modelKeys)
		obj[k] = m.keyValue(room, k)
	}
	return obj
}

func (m *modelRun) encode(v any) []byte {
	if m.rng.IntN(4) == 0 {
		b, _ := json.MarshalIndent(v, " ", "\t")
		return b
	}
	b, _ := json.Marshal(v)
	return b
}

func (m *modelRun) genOp() modelOp {
	room, key := m.pick(modelRooms), m.pick(modelKeys)
	child := m.pickChild(room, key)
	var op modelOp
	switch r := m.rng.IntN(100); {
	case r < 20:
		op = modelOp{kind: "put", at: store.Path{Room: room, Key: key, Child: child}, body: m.encode(m.childValue())}
	case r < 33:
		op = modelOp{kind: "put", at: store.Path{Room: room, Key: key}, body: m.encode(m.keyValue(room, key))}
	case r < 40:
		op = modelOp{kind: "put", at: store.Path{Room: room}, body: m.encode(m.roomValue(room))}
	case r < 50:
		at := store.Path{Room: room, Key: key, Child: child}
		switch m.rng.IntN(6) {
		case 0:
			at = store.Path{Room: room}
		case 1, 2:
			at.Child = ""
		}
		op = modelOp{kind: "delete", at: at}
	case r < 62:
		op = modelOp{kind: "push", at: store.Path{Room: room, Key: key}, body: m.encode(m.childValue())}
	case r < 76:
		members := map[string]any{}
		whole, viaChild := map[string]bool{}, map[string]bool{}
		for range 1 + m.rng.IntN(3) {
			k := m.pick(modelKeys)
			switch {
			case whole[k]: // "k" and "k/c" would overlap
			case viaChild[k] || m.rng.IntN(2) == 0:
				members[k+"/"+m.pickChild(room, k)] = m.childValue()
				viaChild[k] = true
			default:
				members[k] = m.keyValue(room, k)
				whole[k] = true
			}
		}
		op = modelOp{kind: "patch", at: store.Path{Room: room}, body: m.encode(members)}
	case r < 90:
		members := map[string]any{}
		for range m.rng.IntN(4) {
			members[m.pickChild(room, key)] = m.childValue()
		}
		op = modelOp{kind: "patch", at: store.Path{Room: room, Key: key}, body: m.encode(members)}
	default:
		return m.invalidOp(room, key)
	}
	if m.rng.IntN(7) == 0 {
		op.cond = []string{"right", "wrong", "absent"}[m.rng.IntN(3)]
	}
	return op
}

func (m *modelRun) invalidOp(room, key string) modelOp {
	at := store.Path{Room: room, Key: key}
	switch m.rng.IntN(6) {
	case 0:
		return modelOp{kind: "put", at: at, body: []byte(`{"bad name":1}`), wantErr: store.ErrInvalidValue}
	case 1:
		return modelOp{kind: "put", at: store.Path{Room: room}, body: []byte(`[1]`), wantErr: store.ErrInvalidValue}
	case 2:
		return modelOp{kind: "patch", at: store.Path{Room: room}, body: []byte(`{"` + key + `":1,"` + key + `/x":2}`), wantErr: store.ErrInvalidPath}
	case 3:
		return modelOp{kind: "patch", at: at, body: []byte(`{"x/y":1}`), wantErr: store.ErrInvalidPath}
	case 4:
		return modelOp{kind: "put", at: store.Path{Room: room, Key: key, Child: "x"}, body: []byte(`1 2`), wantErr: store.ErrInvalidValue}
	default:
		return modelOp{kind: "put", at: store.Path{Room: room}, body: []byte(`{"a":{"c d":1}}`), wantErr: store.ErrInvalidValue}
	}
}
