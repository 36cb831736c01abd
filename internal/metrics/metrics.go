// Package metrics exposes Prometheus metrics: HTTP requests and latency per
// route pattern, event persist latency, sync wake-ups, database pool
// statistics and the outbound federation queue per destination.
//
// It sits beside the event flow, not in it: homeserver wraps its handler
// with Middleware, hands ObservePersist to room, and passes the other
// sources in as functions, read at scrape time. metrics imports no other
// Myelin package, and keeps its own registry (no global state).
package metrics

import (
	"context"
	"database/sql"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sources are read when /metrics is scraped. Nil fields are skipped.
type Sources struct {
	// SyncWakeups counts user wake-ups of waiting /sync requests.
	SyncWakeups func() int64
	// DBPools returns the database pools' statistics by pool name.
	DBPools func() map[string]sql.DBStats
	// FederationQueue returns the queued PDUs and EDUs per destination.
	FederationQueue func(ctx context.Context) (map[string]int64, error)
}

// Metrics holds the registry and the instruments fed by hooks. A nil
// *Metrics is valid and records nothing, so callers need no checks when
// metrics are off.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	persist  *prometheus.HistogramVec
}

// New registers every metric on a fresh registry.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "myelin_http_requests_total",
			Help: "HTTP requests answered, by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "myelin_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by method and route pattern (long-polling /sync included).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method", "route"}),
		persist: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "myelin_event_persist_duration_seconds",
			Help:    "Time of the write transaction storing an event, by kind (local or received).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.persist,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src.SyncWakeups != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "myelin_sync_wakeups_total",
			Help: "Wake-ups of users' waiting /sync requests.",
		}, func() float64 { return float64(src.SyncWakeups()) }))
	}
	if src.DBPools != nil {
		m.reg.MustRegister(dbCollector(src.DBPools))
	}
	if src.FederationQueue != nil {
		m.reg.MustRegister(queueCollector(src.FederationQueue))
	}
	return m
}

// Handler serves the metrics in the Prometheus text format. A source that
// fails (the queue query, say) drops its own metrics, not the scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// ObservePersist records the write transaction of one event; it fits
// room.WithPersistObserver.
func (m *Metrics) ObservePersist(kind string, took time.Duration) {
	if m == nil {
		return
	}
	m.persist.WithLabelValues(kind).Observe(took.Seconds())
}

// Middleware counts and times requests by the route pattern the
// http.ServeMux inside next matched (Request.Pattern, set in place on the
// request it is handed); requests no route matched count as "unmatched".
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if i := strings.IndexByte(route, ' '); i >= 0 {
			route = route[i+1:] // "GET /path" → "/path"; method is its own label
		}
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(r.Method, route, strconv.Itoa(rec.code)).Inc()
		m.latency.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
	})
}

// recorder remembers the status code written.
type recorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush passes flushes through for streaming handlers.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
