package homeserver_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// scrape returns the text of GET /metrics on addr.
func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, body)
	}
	return string(body)
}

// metricValue sums the samples of name whose labels contain every one of
// labels (each like `route="/health"`); found is false without a match.
func metricValue(text, name string, labels ...string) (sum float64, found bool) {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum, found = sum+v, true
		}
	}
	return sum, found
}

func TestMetrics(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		metricsOn := func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" }
		hs := mxtest.Federation(t, engine, 2, metricsOn)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		joinAll(t, created.RoomID, hs[0].Config.ServerName, alice, bob)
		if _, err := alice.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
			t.Fatal(err)
		}
		// Bob's message reaches alice's server over federation.
		if _, err := bob.SendText(ctx, created.RoomID, "hello"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "bob's message on alice's server", func() (bool, error) {
			got, _ := metricValue(scrape(t, hs[0].MetricsAddr()), "myelin_event_persist_duration_seconds_count", `kind="received"`)
			return got >= 1, nil
		})
		// With federation cut off, alice's message waits in the queue.
		hs[0].Partition(true)
		if _, err := alice.SendText(ctx, created.RoomID, "queued"); err != nil {
			t.Fatal(err)
		}
		if _, err := http.Get(hs[0].URL + "/no/such/path"); err != nil {
			t.Fatal(err)
		}

		text := scrape(t, hs[0].MetricsAddr())
		for _, tc := range []struct {
			name   string
			labels []string
			min    float64
		}{
			{"myelin_http_requests_total", []string{`method="POST"`, `route="/_matrix/client/v3/createRoom"`, `code="200"`}, 1},
			{"myelin_http_requests_total", []string{`method="PUT"`, `route="/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"`, `code="200"`}, 1},
			{"myelin_http_requests_total", []string{`route="unmatched"`, `code="404"`}, 1},
			{"myelin_http_request_duration_seconds_count", []string{`route="/_matrix/client/v3/sync"`}, 1},
			{"myelin_event_persist_duration_seconds_count", []string{`kind="local"`}, 1},
			{"myelin_event_persist_duration_seconds_count", []string{`kind="received"`}, 1},
			{"myelin_sync_wakeups_total", nil, 1},
			{"myelin_db_open_connections", nil, 1},
			{"myelin_db_max_open_connections", nil, 1},
			{"myelin_federation_queue_depth", []string{`destination="` + hs[1].Config.ServerName + `"`}, 1},
			{"go_goroutines", nil, 1},
		} {
			got, found := metricValue(text, tc.name, tc.labels...)
			if !found || got < tc.min {
				t.Errorf("%s%v = %v (found %v), want at least %v", tc.name, tc.labels, got, found, tc.min)
			}
		}
		if t.Failed() {
			t.Log(text)
		}
		hs[0].Partition(false)
	})
}

func TestMetricsOffByDefault(t *testing.T) {
	hs := mxtest.Start(t, "sqlite")
	if hs.MetricsAddr() != "" {
		t.Fatalf("metrics listening on %s without metrics_listen", hs.MetricsAddr())
	}
}

func TestPprofOnMetricsListener(t *testing.T) {
	on := mxtest.Start(t, "sqlite", func(c *config.Config) { c.MetricsListen = "127.0.0.1:0"; c.Pprof = true })
	resp, err := http.Get("http://" + on.MetricsAddr() + "/debug/pprof/goroutine?debug=1")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pprof with pprof on: %v %v", resp, err)
	}
	resp.Body.Close()
	off := mxtest.Start(t, "sqlite", func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" })
	resp, err = http.Get("http://" + off.MetricsAddr() + "/debug/pprof/goroutine?debug=1")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("pprof with pprof off: status %v (%v), want 404", resp, err)
	}
	resp.Body.Close()
}
