package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sigbase/sigbase/store"
)

// Metrics are the Prometheus series sigbase exports, in a registry of their
// own. Create them before opening the store, so ObserveCommit can be its hook.
type Metrics struct {
	reg           *prometheus.Registry
	writes        *prometheus.CounterVec   // op, code
	writeSeconds  *prometheus.HistogramVec // op
	commitOps     prometheus.Histogram
	commitSeconds prometheus.Histogram
	commitErrors  prometheus.Counter
	streams       prometheus.Gauge
	events        prometheus.Counter
	evictions     prometheus.Counter
	resumes       *prometheus.CounterVec // outcome
}

// NewMetrics creates the series, with Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigbase_writes_total", Help: "Writes by operation and HTTP status.",
		}, []string{"op", "code"}),
		writeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sigbase_write_duration_seconds", Help: "Time from a write's arrival at the store to its durable commit.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		commitOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sigbase_commit_group_size", Help: "Writes committed together in one transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000},
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sigbase_commit_duration_seconds", Help: "Time to apply and fsync one commit group.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigbase_commit_failures_total", Help: "Commit groups that failed (their writes got errors); not in the commit histograms.",
		}),
		streams:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "sigbase_watchers", Help: "Open watch streams."}),
		events:    prometheus.NewCounter(prometheus.CounterOpts{Name: "sigbase_events_sent_total", Help: "put and patch events written to watchers."}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "sigbase_watchers_evicted_total", Help: "Watchers dropped with cancel for falling behind."}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigbase_resumes_total", Help: "Watches opened with Last-Event-ID, by outcome: replay from the log, or a fresh snapshot.",
		}, []string{"outcome"}),
	}
	m.reg.MustRegister(m.writes, m.writeSeconds, m.commitOps, m.commitSeconds, m.commitErrors, m.streams, m.events, m.evictions, m.resumes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveCommit records one commit group; it is the store's OnCommit hook.
// A failed group is counted apart, so the histograms describe commits.
func (m *Metrics) ObserveCommit(ops int, elapsed time.Duration, err error) {
	if err != nil {
		m.commitErrors.Inc()
		return
	}
	m.commitOps.Observe(float64(ops))
	m.commitSeconds.Observe(elapsed.Seconds())
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// watchStore exports the store's own counters, read at scrape time.
func (m *Metrics) watchStore(st *store.Store) {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sigbase_rooms", Help: "Rooms stored."},
			func() float64 { return float64(st.Stats().Rooms) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sigbase_rooms_expired_total", Help: "Rooms deleted by the TTL sweep."},
			func() float64 { return float64(st.Stats().Expired) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sigbase_revision", Help: "Last committed revision."},
			func() float64 { return float64(st.Stats().Revision) }),
	} {
		if err := m.reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			panic(err)
		}
	}
}

// writeSeries are one operation's series of a successful write, looked up
// once per handler rather than by label on every request.
type writeSeries struct {
	ok      prometheus.Counter
	seconds prometheus.Observer
}

func (m *Metrics) writeSeriesOf(op string) writeSeries {
	return writeSeries{ok: m.writes.WithLabelValues(op, strconv.Itoa(http.StatusOK)), seconds: m.writeSeconds.WithLabelValues(op)}
}

// observeFailedWrite counts a write that failed, by its HTTP status.
func (m *Metrics) observeFailedWrite(op string, err error) {
	code, _, _ := classify(err)
	m.writes.WithLabelValues(op, strconv.Itoa(code)).Inc()
}

func (m *Metrics) observeResume(replayed bool) {
	outcome := "snapshot"
	if replayed {
		outcome = "replay"
	}
	m.resumes.WithLabelValues(outcome).Inc()
}
