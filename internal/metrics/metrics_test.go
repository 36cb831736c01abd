package metrics

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMiddlewareAndCollectors(t *testing.T) {
	queueErr := false
	m := New(Sources{
		SyncWakeups: func() int64 { return 7 },
		DBPools: func() map[string]sql.DBStats {
			return map[string]sql.DBStats{"main": {MaxOpenConnections: 32, InUse: 2}}
		},
		FederationQueue: func(context.Context) (map[string]int64, error) {
			if queueErr {
				return nil, errors.New("database gone")
			}
			return map[string]int64{"remote.example": 4}, nil
		},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rooms/{roomId}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := m.Middleware(mux)
	for _, r := range []*http.Request{
		httptest.NewRequest("GET", "/rooms/!a:x", nil),
		httptest.NewRequest("GET", "/rooms/!b:x", nil),
		httptest.NewRequest("POST", "/fail", nil),
		httptest.NewRequest("GET", "/nowhere", nil),
	} {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	m.ObservePersist("local", 3*time.Millisecond)

	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		return string(body)
	}
	text := scrape()
	for _, want := range []string{
		`myelin_http_requests_total{code="200",method="GET",route="/rooms/{roomId}"} 2`,
		`myelin_http_requests_total{code="418",method="POST",route="/fail"} 1`,
		`myelin_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`myelin_http_request_duration_seconds_count{method="GET",route="/rooms/{roomId}"} 2`,
		`myelin_event_persist_duration_seconds_count{kind="local"} 1`,
		`myelin_sync_wakeups_total 7`,
		`myelin_db_max_open_connections{pool="main"} 32`,
		`myelin_db_in_use_connections{pool="main"} 2`,
		`myelin_federation_queue_depth{destination="remote.example"} 4`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A failing source is reported, not fatal to the rest of the scrape.
	queueErr = true
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); strings.Contains(body, "remote.example") || !strings.Contains(body, "myelin_sync_wakeups_total 7") {
		t.Errorf("scrape with a failing queue source:\n%s", body)
	}
	if t.Failed() {
		t.Log(text)
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	if got := m.Middleware(h); got == nil {
		t.Fatal("nil middleware")
	}
	m.ObservePersist("local", time.Second) // must not panic
}
