package store

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Query is a Firebase REST query on a key's children: ordered by key, by
// value or by a child's value, bounded, limited. The zero Query is none.
type Query struct {
	OrderBy string // "$key", "$value", or a path inside each child ("a" or "a/b")
	// StartAt, EndAt and EqualTo are compact JSON bounds; nil when unset.
	StartAt, EndAt, EqualTo   []byte
	LimitToFirst, LimitToLast int // 0: no limit
}

// IsZero reports whether q asks for nothing.
func (q Query) IsZero() bool {
	return q.OrderBy == "" && q.StartAt == nil && q.EndAt == nil && q.EqualTo == nil && q.LimitToFirst == 0 && q.LimitToLast == 0
}

// Check applies Firebase's rules to a query: filters and limits need an
// order, $key bounds are strings, equalTo excludes the other bounds, and at
// most one limit.
func (q Query) Check() error {
	bounded := q.StartAt != nil || q.EndAt != nil || q.EqualTo != nil
	switch {
	case q.OrderBy == "" && (bounded || q.LimitToFirst != 0 || q.LimitToLast != 0):
		return fmt.Errorf("%w: a filter or limit needs orderBy", ErrInvalidQuery)
	case q.OrderBy == "$priority":
		return fmt.Errorf("%w: orderBy=\"$priority\": sigbase has no priorities", ErrInvalidQuery)
	case q.EqualTo != nil && (q.StartAt != nil || q.EndAt != nil):
		return fmt.Errorf("%w: equalTo cannot be combined with startAt or endAt", ErrInvalidQuery)
	case q.LimitToFirst != 0 && q.LimitToLast != 0:
		return fmt.Errorf("%w: limitToFirst and limitToLast cannot be combined", ErrInvalidQuery)
	case q.LimitToFirst < 0 || q.LimitToLast < 0:
		return fmt.Errorf("%w: a limit must be a positive integer", ErrInvalidQuery)
	}
	if q.OrderBy != "$key" && q.OrderBy != "$value" && q.OrderBy != "" {
		for _, seg := range strings.Split(q.OrderBy, "/") {
			if seg == "" || strings.HasPrefix(seg, "$") || strings.HasPrefix(seg, ".") {
				return fmt.Errorf("%w: orderBy %q: want \"$key\", \"$value\" or a child path", ErrInvalidQuery, clip(q.OrderBy))
			}
		}
	}
	for _, b := range [][]byte{q.StartAt, q.EndAt, q.EqualTo} {
		if b == nil {
			continue
		}
		if !json.Valid(b) || b[0] == '{' || b[0] == '[' {
			return fmt.Errorf("%w: a bound must be a JSON string, number, boolean or null", ErrInvalidQuery)
		}
		if q.OrderBy == "$key" && b[0] != '"' {
			return fmt.Errorf("%w: with orderBy=\"$key\" a bound must be a string", ErrInvalidQuery)
		}
	}
	return nil
}

// Member is one child of a query's answer.
type Member struct {
	Name string
	Data []byte // compact JSON
}

// Select returns the children of the value data (a key's value as read)
// that the query keeps, in query order.
func (q Query) Select(data []byte) []Member { return q.SelectMembers(ChildrenOf(data)) }

// SelectMembers is Select on a key's children; it may reorder ms.
func (q Query) SelectMembers(children []Member) []Member {
	sortKey := func(m Member) []byte {
		switch q.OrderBy {
		case "$key":
			return nil
		case "$value":
			return m.Data
		}
		return extract(m.Data, strings.Split(q.OrderBy, "/")...)
	}
	compare := func(a, b Member) int {
		if q.OrderBy != "$key" {
			if c := compareValues(sortKey(a), sortKey(b)); c != 0 {
				return c
			}
		}
		return compareKeys(a.Name, b.Name)
	}
	slices.SortFunc(children, compare)
	// bound compares a child with a bound value: the child's sort key, or
	// its name for $key.
	bound := func(m Member, b []byte) int {
		if q.OrderBy == "$key" {
			var s string
			_ = json.Unmarshal(b, &s)
			return compareKeys(m.Name, s)
		}
		return compareValues(sortKey(m), b)
	}
	start, end := q.StartAt, q.EndAt
	if q.EqualTo != nil {
		start, end = q.EqualTo, q.EqualTo
	}
	var kept []Member
	for _, m := range children {
		if start != nil && bound(m, start) < 0 || end != nil && bound(m, end) > 0 {
			continue
		}
		kept = append(kept, m)
	}
	if n := q.LimitToFirst; n > 0 && len(kept) > n {
		kept = kept[:n]
	}
	if n := q.LimitToLast; n > 0 && len(kept) > n {
		kept = kept[len(kept)-n:]
	}
	return kept
}

// Apply is the query's answer as JSON: the kept children as an object (an
// array by Firebase's rule), "null" when none is kept.
func (q Query) Apply(data []byte) []byte { return MembersJSON(q.Select(data)) }

// MembersJSON writes children as a value is read: an object, or an array
// when their names say so; "null" when there are none.
func MembersJSON(ms []Member) []byte {
	if len(ms) == 0 {
		return []byte("null")
	}
	return appendCollection(nil, len(ms), func(i int) (string, []byte) { return ms[i].Name, ms[i].Data })
}

// Shallow is a value with each member of an object truncated to true.
func Shallow(data []byte) []byte {
	children := ChildrenOf(data)
	if len(children) == 0 {
		return data
	}
	for i := range children {
		children[i].Data = []byte("true")
	}
	return MembersJSON(children)
}

// ChildrenOf lists the members of an object or the elements of an array
// (named by index, nulls left out); nothing for anything else.
func ChildrenOf(data []byte) []Member {
	var out []Member
	switch {
	case isObject(data):
		members, _ := objectMembers(trimJSONSpace(data), "")
		for _, m := range members {
			out = append(out, Member{Name: m.name, Data: m.value})
		}
	case isArray(data):
		for i, e := range arrayElements(trimJSONSpace(data)) {
			if string(e) != "null" {
				out = append(out, Member{Name: strconv.Itoa(i), Data: e})
			}
		}
	}
	return out
}

// compareKeys is Firebase's key order: keys that are 32-bit integers first,
// numerically, then the rest as strings.
func compareKeys(a, b string) int {
	ia, aInt := int32Key(a)
	ib, bInt := int32Key(b)
	switch {
	case aInt && bInt:
		return cmp.Compare(ia, ib)
	case aInt:
		return -1
	case bInt:
		return 1
	}
	return strings.Compare(a, b)
}

func int32Key(s string) (int64, bool) {
	digits := strings.TrimPrefix(s, "-")
	if digits == "" || len(digits) > 10 || digits[0] == '0' && len(digits) > 1 || s == "-0" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 32)
	return n, err == nil
}

// valueRank orders JSON types as Firebase does: null < false < true <
// numbers < strings < objects.
func valueRank(b []byte) int {
	switch {
	case len(b) == 0 || b[0] == 'n':
		return 0
	case b[0] == 'f':
		return 1
	case b[0] == 't':
		return 2
	case b[0] == '"':
		return 4
	case b[0] == '{' || b[0] == '[':
		return 5
	}
	return 3
}

// compareValues orders two compact JSON values; objects are all equal.
func compareValues(a, b []byte) int {
	ra, rb := valueRank(a), valueRank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch ra {
	case 3:
		fa, _ := strconv.ParseFloat(string(a), 64)
		fb, _ := strconv.ParseFloat(string(b), 64)
		return cmp.Compare(fa, fb)
	case 4:
		var sa, sb string
		_ = json.Unmarshal(a, &sa)
		_ = json.Unmarshal(b, &sb)
		return strings.Compare(sa, sb)
	}
	return 0
}
