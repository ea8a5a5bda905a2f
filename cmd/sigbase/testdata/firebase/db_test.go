package firebasetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"firebase.google.com/go/v4/db"
	"firebase.google.com/go/v4/errorutils"
)

// get reads path into a generic value.
func get(t *testing.T, c *db.Client, path string) any {
	t.Helper()
	var v any
	if err := c.NewRef(path).Get(context.Background(), &v); err != nil {
		t.Fatalf("Get %s: %v", path, err)
	}
	return v
}

func set(t *testing.T, c *db.Client, path string, v any) {
	t.Helper()
	if err := c.NewRef(path).Set(context.Background(), v); err != nil {
		t.Fatalf("Set %s: %v", path, err)
	}
}

func wantValue(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func TestSetGet(t *testing.T) {
	c := startServer(t).client(t, "")
	for _, tc := range []struct {
		name, path  string
		value, want any // want: what a Get into an `any` gives
	}{
		{"object at key", "r1/offer", map[string]any{"type": "offer", "sdp": "v=0"}, map[string]any{"type": "offer", "sdp": "v=0"}},
		{"string at child", "r1/k/c", "hello", "hello"},
		{"number", "r1/n", 42, float64(42)},
		{"float", "r1/f", 1.5, 1.5},
		{"bool", "r1/b", true, true},
		{"free-form below child", "r1/deep/c", map[string]any{"a": map[string]any{"b": "x"}, "s": "y"}, map[string]any{"a": map[string]any{"b": "x"}, "s": "y"}},
		{"room", "r2", map[string]any{"k1": "v1", "k2": map[string]any{"c": float64(1)}}, map[string]any{"k1": "v1", "k2": map[string]any{"c": float64(1)}}},
		{"null members dropped", "r3/k", map[string]any{"a": 1, "n": nil}, map[string]any{"a": float64(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(t, c, tc.path, tc.value)
			wantValue(t, "Get "+tc.path, get(t, c, tc.path), tc.want)
		})
	}
	t.Run("absent", func(t *testing.T) {
		wantValue(t, "Get r9/none", get(t, c, "r9/none"), nil)
	})
	t.Run("struct", func(t *testing.T) {
		type sdp struct {
			Type string `json:"type"`
			SDP  string `json:"sdp"`
		}
		in := sdp{Type: "answer", SDP: "v=0 (answer)"}
		set(t, c, "r4/answer", in)
		var out sdp
		if err := c.NewRef("r4").Child("answer").Get(context.Background(), &out); err != nil {
			t.Fatal(err)
		}
		wantValue(t, "Get r4/answer", out, in)
		wantValue(t, "Get r4", get(t, c, "r4"), map[string]any{"answer": map[string]any{"type": "answer", "sdp": "v=0 (answer)"}})
	})
	t.Run("overwrite", func(t *testing.T) {
		set(t, c, "r5/k", map[string]any{"a": 1, "b": 2})
		set(t, c, "r5/k", map[string]any{"c": 3})
		wantValue(t, "Get r5/k", get(t, c, "r5/k"), map[string]any{"c": float64(3)})
	})
}

func TestPush(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	list := c.NewRef("r1/callerCandidates")
	var refs []*db.Ref
	for _, cand := range []string{"candidate:1", "candidate:2", "candidate:3"} {
		r, err := list.Push(ctx, map[string]any{"candidate": cand, "sdpMid": "0"})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Key) != 20 || r.Path != "/r1/callerCandidates/"+r.Key {
			t.Fatalf("Push gave key %q, path %q", r.Key, r.Path)
		}
		var got map[string]any
		if err := r.Get(ctx, &got); err != nil {
			t.Fatal(err)
		}
		wantValue(t, "Get "+r.Path, got, map[string]any{"candidate": cand, "sdpMid": "0"})
		refs = append(refs, r)
	}
	if !(refs[0].Key < refs[1].Key && refs[1].Key < refs[2].Key) {
		t.Errorf("push ids do not sort in creation order: %s %s %s", refs[0].Key, refs[1].Key, refs[2].Key)
	}
	all, ok := get(t, c, "r1/callerCandidates").(map[string]any)
	if !ok || len(all) != 3 {
		t.Fatalf("Get r1/callerCandidates = %#v, want 3 children", all)
	}
	wantValue(t, "second candidate", all[refs[1].Key], map[string]any{"candidate": "candidate:2", "sdpMid": "0"})
	// Push without a value writes "" (the SDK's choice), which is readable.
	r, err := c.NewRef("r1/empty").Push(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get "+r.Path, get(t, c, "r1/empty/"+r.Key), "")
}

func TestUpdate(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	set(t, c, "r1", map[string]any{"offer": "o", "answer": "a", "cands": map[string]any{"c1": 1, "c2": 2}, "gone": "x"})
	// Room level: members are key or key/child; nil deletes.
	err := c.NewRef("r1").Update(ctx, map[string]any{
		"answer":   "a2",
		"cands/c1": nil,
		"cands/c3": 3,
		"gone":     nil,
		"new":      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r1", get(t, c, "r1"), map[string]any{
		"offer": "o", "answer": "a2", "cands": map[string]any{"c2": float64(2), "c3": float64(3)}, "new": true,
	})
	// Key level: members are children.
	if err := c.NewRef("r1/cands").Update(ctx, map[string]any{"c2": 20, "c4": map[string]any{"x": "y"}}); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r1/cands", get(t, c, "r1/cands"), map[string]any{"c2": float64(20), "c3": float64(3), "c4": map[string]any{"x": "y"}})
	// Update of an absent room creates it.
	if err := c.NewRef("r2").Update(ctx, map[string]any{"k/c": "v"}); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r2", get(t, c, "r2"), map[string]any{"k": map[string]any{"c": "v"}})
}

func TestDelete(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	set(t, c, "r1", map[string]any{"offer": "o", "cands": map[string]any{"c1": 1, "c2": 2}})
	for _, tc := range []struct {
		path string
		want any // r1 afterwards
	}{
		{"r1/cands/c1", map[string]any{"offer": "o", "cands": map[string]any{"c2": float64(2)}}},
		{"r1/cands/absent", map[string]any{"offer": "o", "cands": map[string]any{"c2": float64(2)}}},
		{"r1/cands/c2", map[string]any{"offer": "o"}}, // the last child takes its key along
		{"r1/offer", nil}, // the last key takes the room along
		{"r1", nil},
	} {
		if err := c.NewRef(tc.path).Delete(ctx); err != nil {
			t.Fatalf("Delete %s: %v", tc.path, err)
		}
		wantValue(t, "Get r1 after deleting "+tc.path, get(t, c, "r1"), tc.want)
	}
	// Set nil deletes too.
	set(t, c, "r2/k", "v")
	set(t, c, "r2/k", nil)
	wantValue(t, "Get r2", get(t, c, "r2"), nil)
}

func TestETagAndSetIfUnchanged(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	ref := c.NewRef("r1/offer")

	var v any
	etag, err := ref.GetWithETag(ctx, &v)
	if err != nil {
		t.Fatal(err)
	}
	if etag != `"null_etag"` || v != nil {
		t.Fatalf("GetWithETag of an absent location = %q, %#v; want \"null_etag\", nil", etag, v)
	}
	// Create only if absent.
	ok, err := ref.SetIfUnchanged(ctx, etag, "first")
	if err != nil || !ok {
		t.Fatalf("SetIfUnchanged(null_etag) = %v, %v; want true", ok, err)
	}
	ok, err = ref.SetIfUnchanged(ctx, etag, "again")
	if err != nil || ok {
		t.Fatalf("second SetIfUnchanged(null_etag) = %v, %v; want false (412)", ok, err)
	}
	wantValue(t, "Get r1/offer", get(t, c, "r1/offer"), "first")

	etag1, err := ref.GetWithETag(ctx, &v)
	if err != nil {
		t.Fatal(err)
	}
	if len(etag1) < 3 || etag1[0] != '"' || etag1[len(etag1)-1] != '"' || etag1 == `"null_etag"` {
		t.Fatalf("GetWithETag = %q, want a quoted revision", etag1)
	}
	wantValue(t, "GetWithETag value", v, "first")
	ok, err = ref.SetIfUnchanged(ctx, etag1, map[string]any{"type": "offer", "sdp": "v=1"})
	if err != nil || !ok {
		t.Fatalf("SetIfUnchanged(%s) = %v, %v; want true", etag1, ok, err)
	}
	etag2, err := ref.GetWithETag(ctx, &v)
	if err != nil {
		t.Fatal(err)
	}
	if etag2 == etag1 {
		t.Errorf("ETag stayed %s across a write", etag1)
	}
	// A write against the old ETag is refused (412) and changes nothing.
	ok, err = ref.SetIfUnchanged(ctx, etag1, "stale")
	if err != nil || ok {
		t.Fatalf("SetIfUnchanged(stale %s) = %v, %v; want false (412)", etag1, ok, err)
	}
	wantValue(t, "Get r1/offer", get(t, c, "r1/offer"), map[string]any{"type": "offer", "sdp": "v=1"})
	// A write elsewhere in the room leaves this location's ETag alone.
	set(t, c, "r1/other", 1)
	etag3, err := ref.GetWithETag(ctx, &v)
	if err != nil {
		t.Fatal(err)
	}
	if etag3 != etag2 {
		t.Errorf("ETag of r1/offer moved from %s to %s on a write to r1/other", etag2, etag3)
	}
	// The room's ETag moved, though.
	etagRoom, err := c.NewRef("r1").GetWithETag(ctx, &v)
	if err != nil {
		t.Fatal(err)
	}
	if etagRoom == etag2 {
		t.Errorf("ETag of r1 is %s, the same as before the write to r1/other", etagRoom)
	}
}

func TestTransaction(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		start any // nil: absent
		want  float64
	}{
		{"absent counter", nil, 5},
		{"counter at 10", 10, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "r1/" + strings.ReplaceAll(tc.name, " ", "_")
			if tc.start != nil {
				set(t, c, path, tc.start)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 5)
			for range 5 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- c.NewRef(path).Transaction(ctx, func(n db.TransactionNode) (any, error) {
						var v float64
						if err := n.Unmarshal(&v); err != nil {
							return nil, err
						}
						return v + 1, nil
					})
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			wantValue(t, "Get "+path, get(t, c, path), tc.want)
		})
	}
	t.Run("object value", func(t *testing.T) {
		set(t, c, "r2/members", map[string]any{"p1": map[string]any{"online": true}})
		err := c.NewRef("r2/members").Transaction(ctx, func(n db.TransactionNode) (any, error) {
			var m map[string]any
			if err := n.Unmarshal(&m); err != nil {
				return nil, err
			}
			m["p2"] = map[string]any{"online": false}
			return m, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		wantValue(t, "Get r2/members", get(t, c, "r2/members"), map[string]any{
			"p1": map[string]any{"online": true}, "p2": map[string]any{"online": false},
		})
	})
	t.Run("aborted by the function", func(t *testing.T) {
		set(t, c, "r3/k", "keep")
		stop := errors.New("stop")
		err := c.NewRef("r3/k").Transaction(ctx, func(db.TransactionNode) (any, error) { return nil, stop })
		if !errors.Is(err, stop) {
			t.Fatalf("Transaction = %v, want the function's error", err)
		}
		wantValue(t, "Get r3/k", get(t, c, "r3/k"), "keep")
	})
}

func TestArrays(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	set(t, c, "r1/arr", []any{1, 2, 3})
	wantValue(t, "Get r1/arr", get(t, c, "r1/arr"), []any{float64(1), float64(2), float64(3)})
	wantValue(t, "Get r1/arr/1", get(t, c, "r1/arr/1"), float64(2))
	var ints []int
	if err := c.NewRef("r1/arr").Get(ctx, &ints); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r1/arr into []int", ints, []int{1, 2, 3})

	set(t, c, "r1/arr/0", "z")
	wantValue(t, "Get r1/arr after setting element 0", get(t, c, "r1/arr"), []any{"z", float64(2), float64(3)})

	// A missing element reads as null while more than half are there.
	if err := c.NewRef("r1/arr/1").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r1/arr after deleting element 1", get(t, c, "r1/arr"), []any{"z", nil, float64(3)})
	// An element past the end extends it.
	set(t, c, "r1/arr/3", "w")
	wantValue(t, "Get r1/arr after setting element 3", get(t, c, "r1/arr"), []any{"z", nil, float64(3), "w"})

	for _, tc := range []struct {
		name  string
		value any
		want  any
	}{
		{"sparse object reads as array", map[string]any{"0": "a", "2": "c"}, []any{"a", nil, "c"}},
		{"too sparse stays an object", map[string]any{"2": "c"}, map[string]any{"2": "c"}},
		{"non-canonical index stays an object", map[string]any{"0": "a", "01": "b"}, map[string]any{"0": "a", "01": "b"}},
		{"array of objects", []any{map[string]any{"a": 1}, map[string]any{"b": 2}}, []any{map[string]any{"a": float64(1)}, map[string]any{"b": float64(2)}}},
		{"nulls dropped", []any{"a", nil, "c"}, []any{"a", nil, "c"}},
		{"array below child", map[string]any{"list": []any{"x", "y"}}, map[string]any{"list": []any{"x", "y"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "r2/" + strings.ReplaceAll(tc.name, " ", "_")
			set(t, c, path, tc.value)
			wantValue(t, "Get "+path, get(t, c, path), tc.want)
		})
	}
	// Update addresses elements too.
	if err := c.NewRef("r1").Update(ctx, map[string]any{"arr/1": "u"}); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r1/arr after Update arr/1", get(t, c, "r1/arr"), []any{"z", "u", float64(3), "w"})
}

func TestGetIfChanged(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	ref := c.NewRef("r1/offer")
	set(t, c, "r1/offer", map[string]any{"type": "offer", "sdp": "v=0"})
	var v any
	etag, err := ref.GetWithETag(ctx, &v)
	if err != nil {
		t.Fatal(err)
	}

	// Unchanged: 304, the value is left alone and the ETag is the same.
	var unchanged any = "untouched"
	changed, etag2, err := ref.GetIfChanged(ctx, etag, &unchanged)
	if err != nil {
		t.Fatal(err)
	}
	if changed || etag2 != etag || unchanged != "untouched" {
		t.Errorf("GetIfChanged(%s) on an unchanged location = %v, %s, %#v; want false, %s, untouched", etag, changed, etag2, unchanged, etag)
	}

	// Changed: 200 with the value and the new ETag.
	set(t, c, "r1/offer", map[string]any{"type": "offer", "sdp": "v=1"})
	var now any
	changed, etag3, err := ref.GetIfChanged(ctx, etag, &now)
	if err != nil {
		t.Fatal(err)
	}
	if !changed || etag3 == etag || etag3 == "" {
		t.Errorf("GetIfChanged(%s) after a write = %v, %s; want true and a new ETag", etag, changed, etag3)
	}
	wantValue(t, "GetIfChanged value", now, map[string]any{"type": "offer", "sdp": "v=1"})

	// Absent: null_etag is unchanged until something is written.
	absent := c.NewRef("r1/answer")
	changed, _, err = absent.GetIfChanged(ctx, `"null_etag"`, &now)
	if err != nil {
		t.Fatal(err)
	}
	if changed {
		t.Errorf(`GetIfChanged("null_etag") on an absent location = true, want false`)
	}
	set(t, c, "r1/answer", "a")
	var ans any
	changed, _, err = absent.GetIfChanged(ctx, `"null_etag"`, &ans)
	if err != nil {
		t.Fatal(err)
	}
	if !changed || ans != "a" {
		t.Errorf(`GetIfChanged("null_etag") after a write = %v, %#v; want true, "a"`, changed, ans)
	}
}

func TestShallow(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	set(t, c, "r1", map[string]any{
		"offer":  map[string]any{"type": "offer", "sdp": "v=0"},
		"answer": "a",
		"n":      7,
		"cands":  map[string]any{"c1": map[string]any{"candidate": "x"}, "c2": 1},
	})
	for _, tc := range []struct {
		path string
		want any
	}{
		{"r1", map[string]any{"offer": true, "answer": true, "n": true, "cands": true}},
		{"r1/cands", map[string]any{"c1": true, "c2": true}},
		{"r1/answer", "a"},
		{"r1/n", float64(7)},
		{"r1/cands/c1", map[string]any{"candidate": true}},
		{"r1/absent", nil},
		{"r9", nil},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var v any
			if err := c.NewRef(tc.path).GetShallow(ctx, &v); err != nil {
				t.Fatal(err)
			}
			wantValue(t, "GetShallow "+tc.path, v, tc.want)
		})
	}
}

func TestQueries(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	set(t, c, "r1/scores", map[string]any{
		"alice": map[string]any{"score": 30, "team": "red"},
		"bob":   map[string]any{"score": 10, "team": "blue"},
		"carol": map[string]any{"score": 20, "team": "red"},
		"dave":  map[string]any{"score": 40, "team": "blue"},
		"eve":   map[string]any{"team": "red"}, // no score: null, first
	})
	set(t, c, "r1/vals", map[string]any{"a": 3, "b": 1, "c": "x", "d": true, "e": 2, "f": map[string]any{"o": 1}})
	set(t, c, "r1/players", map[string]any{
		"p1": map[string]any{"meta": map[string]any{"rank": 2}},
		"p2": map[string]any{"meta": map[string]any{"rank": 1}},
		"p3": map[string]any{"meta": map[string]any{"rank": 3}},
	})
	set(t, c, "r1/ids", map[string]any{"10": "ten", "9": "nine", "a": "letter", "100": "hundred"})
	scores, vals := c.NewRef("r1/scores"), c.NewRef("r1/vals")
	// GetOrdered sorts on the client, and sorts the keys of an object
	// answer as strings, not integers first as Firebase (and sigbase) do.
	sdkOrder := map[string][]string{"key integers first": {"10", "100", "9"}}
	for _, tc := range []struct {
		name string
		q    *db.Query
		want []string // keys, in the query's order
	}{
		{"child limitToFirst", scores.OrderByChild("score").LimitToFirst(2), []string{"eve", "bob"}},
		{"child limitToLast", scores.OrderByChild("score").LimitToLast(2), []string{"alice", "dave"}},
		{"child startAt", scores.OrderByChild("score").StartAt(15), []string{"carol", "alice", "dave"}},
		{"child endAt", scores.OrderByChild("score").EndAt(20), []string{"eve", "bob", "carol"}},
		{"child startAt endAt", scores.OrderByChild("score").StartAt(15).EndAt(35), []string{"carol", "alice"}},
		{"child equalTo", scores.OrderByChild("score").EqualTo(20), []string{"carol"}},
		{"child equalTo string, ties by key", scores.OrderByChild("team").EqualTo("red"), []string{"alice", "carol", "eve"}},
		{"child startAt limitToFirst", scores.OrderByChild("score").StartAt(15).LimitToFirst(1), []string{"carol"}},
		{"child endAt limitToLast", scores.OrderByChild("score").EndAt(30).LimitToLast(2), []string{"carol", "alice"}},
		{"child no match", scores.OrderByChild("score").StartAt(100), nil},
		{"nested child path", c.NewRef("r1/players").OrderByChild("meta/rank").LimitToFirst(2), []string{"p2", "p1"}},
		{"key all", scores.OrderByKey(), []string{"alice", "bob", "carol", "dave", "eve"}},
		{"key startAt endAt", scores.OrderByKey().StartAt("b").EndAt("d"), []string{"bob", "carol"}},
		{"key limitToFirst", scores.OrderByKey().LimitToFirst(1), []string{"alice"}},
		{"key limitToLast", scores.OrderByKey().LimitToLast(2), []string{"dave", "eve"}},
		{"key equalTo", scores.OrderByKey().EqualTo("carol"), []string{"carol"}},
		{"key integers first", c.NewRef("r1/ids").OrderByKey().LimitToFirst(3), []string{"9", "10", "100"}},
		{"value all", vals.OrderByValue(), []string{"d", "b", "e", "a", "c", "f"}},
		{"value limitToFirst", vals.OrderByValue().LimitToFirst(3), []string{"d", "b", "e"}},
		{"value startAt", vals.OrderByValue().StartAt(2), []string{"e", "a", "c", "f"}},
		{"value endAt", vals.OrderByValue().EndAt(2), []string{"d", "b", "e"}},
		{"value limitToLast", vals.OrderByValue().LimitToLast(1), []string{"f"}},
		{"value equalTo", vals.OrderByValue().EqualTo(1), []string{"b"}},
		{"value equalTo string", vals.OrderByValue().EqualTo("x"), []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes, err := tc.q.GetOrdered(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, n := range nodes {
				keys = append(keys, n.Key())
			}
			if order, ok := sdkOrder[tc.name]; ok {
				wantValue(t, "GetOrdered keys", keys, order)
			} else {
				wantValue(t, "GetOrdered keys", keys, tc.want)
			}
			// The server filtered: Get gives exactly those children.
			var m map[string]any
			if err := tc.q.Get(ctx, &m); err != nil {
				t.Fatal(err)
			}
			if len(m) != len(tc.want) {
				t.Errorf("Get gave %d children %v, want %d", len(m), m, len(tc.want))
			}
			for _, k := range tc.want {
				if _, ok := m[k]; !ok {
					t.Errorf("Get lacks child %q: %v", k, m)
				}
			}
		})
	}
	t.Run("values", func(t *testing.T) {
		var m map[string]map[string]any
		if err := scores.OrderByChild("score").EqualTo(30).Get(ctx, &m); err != nil {
			t.Fatal(err)
		}
		wantValue(t, "Get", m, map[string]map[string]any{"alice": {"score": float64(30), "team": "red"}})
		nodes, err := scores.OrderByChild("score").EqualTo(30).GetOrdered(ctx)
		if err != nil || len(nodes) != 1 {
			t.Fatalf("GetOrdered = %v, %v", nodes, err)
		}
		var s struct {
			Score int    `json:"score"`
			Team  string `json:"team"`
		}
		if err := nodes[0].Unmarshal(&s); err != nil || s.Score != 30 || s.Team != "red" {
			t.Errorf("node alice = %+v, %v", s, err)
		}
	})
	t.Run("result read as array", func(t *testing.T) {
		set(t, c, "r1/list", []any{"x", "y", "z"})
		var v any
		if err := c.NewRef("r1/list").OrderByKey().LimitToLast(2).Get(ctx, &v); err != nil {
			t.Fatal(err)
		}
		wantValue(t, "Get r1/list limitToLast 2", v, []any{nil, "y", "z"})
	})
	t.Run("absent location", func(t *testing.T) {
		nodes, err := c.NewRef("r1/none").OrderByKey().LimitToFirst(1).GetOrdered(ctx)
		if err != nil || nodes != nil {
			t.Errorf("GetOrdered of an absent key = %v, %v; want nil, nil", nodes, err)
		}
	})
	// Queries that Firebase refuses, refused by the server with 400.
	for _, tc := range []struct {
		name   string
		q      *db.Query
		reason string
	}{
		{"key bound not a string", scores.OrderByKey().StartAt(1), "a bound must be a string"},
		{"equalTo with startAt", scores.OrderByChild("score").StartAt(1).EqualTo(2), "equalTo cannot be combined"},
		{"query on a room", c.NewRef("r1").OrderByKey().LimitToFirst(1), "queries work on a key's children"},
		{"query on a child", c.NewRef("r1/scores/alice").OrderByKey().LimitToFirst(1), "queries work on a key's children"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			var v any
			err := tc.q.Get(ctx, &v)
			if !errorutils.IsInvalidArgument(err) {
				t.Fatalf("Get = %v, want a 400 (invalid argument)", err)
			}
			if !strings.Contains(err.Error(), "http error status: 400; reason: invalid query: ") || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not carry the server's reason", err)
			}
		})
	}
}

func TestServerValues(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	timestamp := map[string]any{".sv": "timestamp"}
	increment := func(n float64) any { return map[string]any{".sv": map[string]any{"increment": n}} }
	inRange := func(t *testing.T, what string, v any, from, to int64) {
		t.Helper()
		f, ok := v.(float64)
		if !ok || int64(f) < from || int64(f) > to {
			t.Errorf("%s = %#v, want a millisecond timestamp in [%d, %d]", what, v, from, to)
		}
	}

	before := time.Now().UnixMilli()
	set(t, c, "r1/at", timestamp)
	set(t, c, "r1/obj", map[string]any{"created": timestamp, "by": "p1"})
	after := time.Now().UnixMilli()
	inRange(t, "Get r1/at", get(t, c, "r1/at"), before, after)
	obj, _ := get(t, c, "r1/obj").(map[string]any)
	inRange(t, "Get r1/obj/created", obj["created"], before, after)
	wantValue(t, "Get r1/obj/by", obj["by"], "p1")

	set(t, c, "r1/n", 5)
	set(t, c, "r1/n", increment(2))
	wantValue(t, "Get r1/n after increment 2", get(t, c, "r1/n"), float64(7))
	set(t, c, "r1/fresh", increment(3))
	wantValue(t, "Get r1/fresh (absent) after increment 3", get(t, c, "r1/fresh"), float64(3))

	if err := c.NewRef("r1").Update(ctx, map[string]any{"n": increment(1), "obj/updated": timestamp}); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r1/n after Update increment 1", get(t, c, "r1/n"), float64(8))
	obj, _ = get(t, c, "r1/obj").(map[string]any)
	inRange(t, "Get r1/obj/updated", obj["updated"], before, time.Now().UnixMilli())

	r, err := c.NewRef("r1/log").Push(ctx, map[string]any{"at": timestamp})
	if err != nil {
		t.Fatal(err)
	}
	pushed, _ := get(t, c, "r1/log/"+r.Key).(map[string]any)
	inRange(t, "Get pushed at", pushed["at"], before, time.Now().UnixMilli())

	// Concurrent increments all count: the server adds at commit.
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.NewRef("r1/hits").Set(ctx, increment(1)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	wantValue(t, "Get r1/hits after 5 concurrent increments", get(t, c, "r1/hits"), float64(5))

	err = c.NewRef("r1/bad").Set(ctx, map[string]any{".sv": "nonsense"})
	if !errorutils.IsInvalidArgument(err) {
		t.Errorf("Set of an unknown server value = %v, want 400", err)
	}
}

func TestErrors(t *testing.T) {
	c := startServer(t).client(t, "")
	ctx := context.Background()
	set(t, c, "r1/k", "v")
	for _, tc := range []struct {
		name   string
		do     func() error
		status int
		is     func(error) bool
		reason string // part of the server's message
	}{
		{"too deep", func() error { var v any; return c.NewRef("r1/a/b/c").Get(ctx, &v) }, 400, errorutils.IsInvalidArgument, "at most three levels deep"},
		{"bad name", func() error { var v any; return c.NewRef("r1/bad!name").Get(ctx, &v) }, 400, errorutils.IsInvalidArgument, "bad!name"},
		{"room value not an object", func() error { return c.NewRef("r1").Set(ctx, "x") }, 400, errorutils.IsInvalidArgument, "a room's value must be an object or null"},
		{"priority", func() error { return c.NewRef("r1/k").Set(ctx, map[string]any{".priority": 1, "a": 1}) }, 400, errorutils.IsInvalidArgument, ".priority"},
		{"rooms not listed", func() error { var v any; return c.NewRef("/").Get(ctx, &v) }, 403, errorutils.IsPermissionDenied, "rooms are not listed"},
		{"push to a room", func() error { _, err := c.NewRef("r1").Push(ctx, "x"); return err }, 405, nil, "Method Not Allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if err == nil {
				t.Fatal("no error")
			}
			resp := errorutils.HTTPResponse(err)
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("error %v: HTTP response %v, want status %d", err, resp, tc.status)
			}
			if tc.is != nil && !tc.is(err) {
				t.Errorf("error %v is not of the class of HTTP %d", err, tc.status)
			}
			want := fmt.Sprintf("http error status: %d; reason: ", tc.status)
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not carry the server's message (%q)", err, tc.reason)
			}
		})
	}
	wantValue(t, "Get r1 after the refused writes", get(t, c, "r1"), map[string]any{"k": "v"})
}

func TestAuth(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("firebase-sdk-test-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--auth-secret-file", secret)
	ctx := context.Background()
	rw := mintToken(t, secret, "--room", "r1", "--perm", "read,write")
	ro := mintToken(t, secret, "--room", "r1", "--perm", "read")

	writer := srv.client(t, rw)
	if err := writer.NewRef("r1/offer").Set(ctx, map[string]any{"type": "offer", "sdp": "v=0"}); err != nil {
		t.Fatalf("Set with a read-write token: %v", err)
	}
	var v map[string]any
	if err := writer.NewRef("r1/offer").Get(ctx, &v); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r1/offer", v, map[string]any{"type": "offer", "sdp": "v=0"})
	if _, err := writer.NewRef("r1/cands").Push(ctx, "c1"); err != nil {
		t.Errorf("Push with a read-write token: %v", err)
	}

	reader := srv.client(t, ro)
	var got any
	if err := reader.NewRef("r1/offer").Get(ctx, &got); err != nil {
		t.Errorf("Get with a read token: %v", err)
	}
	for _, tc := range []struct {
		name   string
		do     func() error
		status int
		is     func(error) bool
		reason string
	}{
		{"no token", func() error { return srv.client(t, "").NewRef("r1/offer").Get(ctx, &got) }, 401, errorutils.IsUnauthenticated, "a token is required"},
		{"forged token", func() error { return srv.client(t, rw+"x").NewRef("r1/offer").Get(ctx, &got) }, 401, errorutils.IsUnauthenticated, "invalid token"},
		// Without an HTTP client the SDK, seeing an emulator URL, sends
		// "Authorization: Bearer owner".
		{"SDK's emulator token", func() error { return srv.clientWith(t).NewRef("r1/offer").Get(ctx, &got) }, 401, errorutils.IsUnauthenticated, "invalid token"},
		{"read token writes", func() error { return reader.NewRef("r1/offer").Set(ctx, "x") }, 403, errorutils.IsPermissionDenied, "token does not grant write"},
		{"other room", func() error { return writer.NewRef("r2/offer").Get(ctx, &got) }, 403, errorutils.IsPermissionDenied, "not valid for this room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			resp := errorutils.HTTPResponse(err)
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("error %v: HTTP response %v, want status %d", err, resp, tc.status)
			}
			if !tc.is(err) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q: want the class of %d and the reason %q", err, tc.status, tc.reason)
			}
		})
	}
	if err := reader.NewRef("r1/offer").Get(ctx, &v); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get r1/offer after the refused write", v, map[string]any{"type": "offer", "sdp": "v=0"})
}

// TestEmulatorConfig points the SDK at sigbase the ways its emulator
// support allows, with no option at all (auth off).
func TestEmulatorConfig(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	c := srv.clientWith(t)
	if err := c.NewRef("r1/k").Set(ctx, "v"); err != nil {
		t.Fatalf("Set with the SDK's defaults: %v", err)
	}
	t.Run("FIREBASE_DATABASE_EMULATOR_HOST", func(t *testing.T) {
		t.Setenv("FIREBASE_DATABASE_EMULATOR_HOST", srv.dbURL)
		other := &server{addr: srv.addr, dbURL: "https://sigbase-unused.firebaseio.com"}
		var v any
		if err := other.clientWith(t).NewRef("r1/k").Get(ctx, &v); err != nil {
			t.Fatal(err)
		}
		wantValue(t, "Get r1/k", v, "v")
	})
	t.Run("refs with /rooms", func(t *testing.T) {
		// The database URL may stop at the host; ref paths then start
		// with rooms/.
		_, port, _ := strings.Cut(srv.addr, ":")
		root := &server{addr: srv.addr, dbURL: "localhost:" + port + "?ns=sigbase"}
		var v any
		if err := root.clientWith(t).NewRef("rooms/r1/k").Get(ctx, &v); err != nil {
			t.Fatal(err)
		}
		wantValue(t, "Get rooms/r1/k", v, "v")
	})
}

// TestHTTPS uses the production form of the database URL, an https URL
// ending in /rooms, as a deployment would; the HTTP client given to the SDK
// replaces Google's credentials with the sigbase token.
func TestHTTPS(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("firebase-sdk-test-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--tls-self-signed", "--auth-secret-file", secret)
	if !strings.HasPrefix(srv.dbURL, "https://") {
		t.Fatalf("database URL %s, want https", srv.dbURL)
	}
	ctx := context.Background()
	c := srv.client(t, mintToken(t, secret, "--room", "*"))
	set(t, c, "r1/offer", map[string]any{"type": "offer", "sdp": "v=0"})
	wantValue(t, "Get r1", get(t, c, "r1"), map[string]any{"offer": map[string]any{"type": "offer", "sdp": "v=0"}})
	r, err := c.NewRef("r1/cands").Push(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, "Get pushed", get(t, c, "r1/cands/"+r.Key), "c1")
	var v any
	err = srv.client(t, "").NewRef("r1/offer").Get(ctx, &v)
	if !errorutils.IsUnauthenticated(err) {
		t.Errorf("Get without a token = %v, want 401", err)
	}
}

// TestAuthOverrideRefused: an app configured with AuthOverride sends
// auth_variable_override on every request, which sigbase has no rules for:
// a 400 naming it, not a silently ignored override.
func TestAuthOverrideRefused(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	cfg := srv.config()
	cfg.AuthOverride = &map[string]any{"uid": "u1"}
	err := srv.recordedClient(t, "", cfg).NewRef("r1/k").Set(ctx, "v")
	if !errorutils.IsInvalidArgument(err) || !strings.Contains(err.Error(), "auth_variable_override") {
		t.Fatalf("Set with an auth override = %v, want 400 naming auth_variable_override", err)
	}
	var v any
	if err := srv.client(t, "").NewRef("r1/k").Get(ctx, &v); err != nil || v != nil {
		t.Errorf("Get r1/k = %#v, %v; want nil: the refused write changed nothing", v, err)
	}
}
