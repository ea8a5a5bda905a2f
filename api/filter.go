package api

import (
	"bytes"
	"maps"
	"slices"
	"strings"

	"github.com/sigbase/sigbase/store"
)

// queryFilter turns the events of a watch on a key into those of a query on
// it (a filtered watch): it keeps the key's children as the events leave
// them and sends what entered, changed in or left the answer, so a client
// replaying the events holds what a GET with the same query returns.
type queryFilter struct {
	q        store.Query
	children map[string][]byte
	answer   map[string][]byte
}

func newQueryFilter(q store.Query) *queryFilter {
	return &queryFilter{q: q, children: map[string][]byte{}, answer: map[string][]byte{}}
}

// apply maps the key's events to the query's.
func (f *queryFilter) apply(events []store.Event) []store.Event {
	var out []store.Event
	for _, ev := range events {
		switch {
		case ev.Path == "/" && !ev.Patch:
			// A new value or a snapshot: it replaces what the client holds.
			clear(f.children)
			for _, m := range store.ChildrenOf(ev.Data) {
				f.children[m.Name] = m.Data
			}
			ans := f.selectAnswer()
			f.answer = toMap(ans)
			out = append(out, store.Event{Rev: ev.Rev, Path: "/", Data: store.MembersJSON(ans)})
			continue
		case ev.Patch:
			// A patch object's members are children; null deletes.
			for _, m := range store.ChildrenOf(ev.Data) {
				if string(m.Data) == "null" {
					delete(f.children, m.Name)
				} else {
					f.children[m.Name] = m.Data
				}
			}
		default:
			name := strings.TrimPrefix(ev.Path, "/")
			if string(ev.Data) == "null" {
				delete(f.children, name)
			} else {
				f.children[name] = ev.Data
			}
		}
		out = f.diff(ev.Rev, out)
	}
	return out
}

// diff appends the puts that take the client from the last answer to the
// current one: children that left get null, those that entered or changed
// their value.
func (f *queryFilter) diff(rev uint64, out []store.Event) []store.Event {
	next := toMap(f.selectAnswer())
	for _, name := range slices.Sorted(maps.Keys(f.answer)) {
		if _, kept := next[name]; !kept {
			out = append(out, store.Event{Rev: rev, Path: "/" + name, Data: []byte("null")})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(next)) {
		if old, had := f.answer[name]; !had || !bytes.Equal(old, next[name]) {
			out = append(out, store.Event{Rev: rev, Path: "/" + name, Data: next[name]})
		}
	}
	f.answer = next
	return out
}

func (f *queryFilter) selectAnswer() []store.Member {
	ms := make([]store.Member, 0, len(f.children))
	for name, data := range f.children {
		ms = append(ms, store.Member{Name: name, Data: data})
	}
	return f.q.SelectMembers(ms)
}

func toMap(ms []store.Member) map[string][]byte {
	m := make(map[string][]byte, len(ms))
	for _, x := range ms {
		m[x.Name] = x.Data
	}
	return m
}
