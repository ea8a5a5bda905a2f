package bolt

import (
	"fmt"
	"github.com/sigbase/sigbase/store"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchBody is an ICE candidate, the most frequent write in signaling.
var benchBody = []byte(`{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0","sdpMid":"0","sdpMLineIndex":0}`)

// BenchmarkWrite measures durable writes (committed and fsynced before they
// return) with 1 and 64 concurrent writers, each on its own room, and with
// 64 writers sharing 4 rooms: a commit writes about one page per bucket and
// room it touches, so the number of rooms per commit sets its cost.
func BenchmarkWrite(b *testing.B) {
	for _, bc := range []struct{ writers, rooms int }{{1, 1}, {64, 64}, {64, 4}} {
		name := fmt.Sprintf("writers=%d", bc.writers)
		if bc.rooms != bc.writers {
			name += fmt.Sprintf(",rooms=%d", bc.rooms)
		}
		writers := bc.writers
		b.Run(name, func(b *testing.B) {
			s := openStore(b, store.Options{})
			lat := make([][]time.Duration, writers)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for g := range writers {
				wg.Go(func() {
					room := fmt.Sprintf("bench%d", g%bc.rooms)
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						at := store.Path{Room: room, Key: fmt.Sprintf("k%d", i%100)}
						t0 := time.Now()
						if _, err := s.Put(b.Context(), at, benchBody, store.Cond{}); err != nil {
							b.Errorf("Put: %v", err)
							return
						}
						lat[g] = append(lat[g], time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
			b.ReportMetric(percentile(all, 0.50), "p50-ms")
			b.ReportMetric(percentile(all, 0.99), "p99-ms")
		})
	}
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(float64(len(sorted)-1)*p)]) / float64(time.Millisecond)
}

// BenchmarkNotify measures one writer's durable writes to a room watched by
// 0, 1, 100 or 1000 watchers, each drained by its own goroutine; the timer
// stops when every watcher has received every change.
func BenchmarkNotify(b *testing.B) {
	for _, watchers := range []int{0, 1, 100, 1000} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) {
			s := openStore(b, store.Options{WatchQueue: 1 << 20})
			at := store.Path{Room: "notify", Key: "callerCandidates"}
			reached := make([]atomic.Uint64, watchers)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := range watchers {
				w, err := s.Watch(at, 0, false)
				if err != nil {
					b.Fatal(err)
				}
				drain(b, w) // the snapshot
				wg.Go(func() {
					defer w.Close()
					for {
						select {
						case <-w.Ready():
							evs, err := w.Next()
							if err != nil {
								b.Errorf("watcher: %v", err)
								return
							}
							if len(evs) > 0 {
								reached[i].Store(evs[len(evs)-1].Rev)
							}
						case <-stop:
							return
						}
					}
				})
			}
			b.ResetTimer()
			start := time.Now()
			var last uint64
			for i := 0; i < b.N; i++ {
				at.Child = fmt.Sprintf("c%d", i%50)
				res, err := s.Put(b.Context(), at, benchBody, store.Cond{})
				if err != nil {
					b.Fatal(err)
				}
				last = res.Rev
			}
			for i := range reached {
				for reached[i].Load() < last {
					time.Sleep(50 * time.Microsecond)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
			b.ReportMetric(float64(b.N*watchers)/elapsed.Seconds(), "deliveries/s")
		})
	}
}
