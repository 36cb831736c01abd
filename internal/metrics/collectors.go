package metrics

import (
	"context"
	"database/sql"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collectorFunc is a prometheus.Collector built from functions; metrics
// are created at scrape time from sources owned by other packages.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func dbCollector(pools func() map[string]sql.DBStats) prometheus.Collector {
	pool := []string{"pool"}
	open := prometheus.NewDesc("myelin_db_open_connections", "Open database connections, by pool.", pool, nil)
	inUse := prometheus.NewDesc("myelin_db_in_use_connections", "Database connections in use, by pool.", pool, nil)
	idle := prometheus.NewDesc("myelin_db_idle_connections", "Idle database connections, by pool.", pool, nil)
	maxOpen := prometheus.NewDesc("myelin_db_max_open_connections", "Limit of open database connections, by pool.", pool, nil)
	waits := prometheus.NewDesc("myelin_db_wait_count_total", "Waits for a free database connection, by pool.", pool, nil)
	waited := prometheus.NewDesc("myelin_db_wait_seconds_total", "Time spent waiting for a free database connection, by pool.", pool, nil)
	return collectorFunc{
		descs: []*prometheus.Desc{open, inUse, idle, maxOpen, waits, waited},
		collect: func(ch chan<- prometheus.Metric) {
			for name, st := range pools() {
				ch <- prometheus.MustNewConstMetric(open, prometheus.GaugeValue, float64(st.OpenConnections), name)
				ch <- prometheus.MustNewConstMetric(inUse, prometheus.GaugeValue, float64(st.InUse), name)
				ch <- prometheus.MustNewConstMetric(idle, prometheus.GaugeValue, float64(st.Idle), name)
				ch <- prometheus.MustNewConstMetric(maxOpen, prometheus.GaugeValue, float64(st.MaxOpenConnections), name)
				ch <- prometheus.MustNewConstMetric(waits, prometheus.CounterValue, float64(st.WaitCount), name)
				ch <- prometheus.MustNewConstMetric(waited, prometheus.CounterValue, st.WaitDuration.Seconds(), name)
			}
		},
	}
}

// queueTimeout bounds the query behind the federation queue gauge.
const queueTimeout = 5 * time.Second

func queueCollector(depths func(context.Context) (map[string]int64, error)) prometheus.Collector {
	depth := prometheus.NewDesc("myelin_federation_queue_depth",
		"PDUs and EDUs waiting to be sent, by destination server (only destinations with a backlog).", []string{"destination"}, nil)
	return collectorFunc{
		descs: []*prometheus.Desc{depth},
		collect: func(ch chan<- prometheus.Metric) {
			ctx, cancel := context.WithTimeout(context.Background(), queueTimeout)
			defer cancel()
			got, err := depths(ctx)
			if err != nil {
				ch <- prometheus.NewInvalidMetric(depth, err)
				return
			}
			for dest, n := range got {
				ch <- prometheus.MustNewConstMetric(depth, prometheus.GaugeValue, float64(n), dest)
			}
		},
	}
}
