package homeserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/myelin-chat/myelin/internal/metrics"
)

// metricsListener serves /metrics on its own address, so that metrics
// are never exposed on the public listeners.
type metricsListener struct {
	srv    *http.Server
	ln     net.Listener
	served chan error
}

// newMetrics returns the metrics of this server, or nil when
// metrics_listen is not set. It needs db, notifier and sender built.
func (s *Server) newMetrics() *metrics.Metrics {
	if s.cfg.MetricsListen == "" {
		return nil
	}
	return metrics.New(metrics.Sources{
		SyncWakeups:     s.notifier.Wakeups,
		DBPools:         s.db.PoolStats,
		FederationQueue: s.sender.QueueDepths,
	})
}

// startMetrics listens on metrics_listen when metrics are on.
func (s *Server) startMetrics() error {
	if s.metrics == nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("listening on metrics_listen %s: %w", s.cfg.MetricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	m := &metricsListener{ln: ln, served: make(chan error, 1), srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}}
	go func() { m.served <- m.srv.Serve(ln) }()
	s.metricsL = m
	s.log.Info("metrics listening", "addr", ln.Addr().String())
	return nil
}

// MetricsAddr returns the address of the metrics listener, or "" when
// metrics are off.
func (s *Server) MetricsAddr() string {
	if s.metricsL == nil {
		return ""
	}
	return s.metricsL.ln.Addr().String()
}

func (s *Server) stopMetrics(ctx context.Context) error {
	if s.metricsL == nil {
		return nil
	}
	err := s.metricsL.srv.Shutdown(ctx)
	if served := <-s.metricsL.served; served != nil && !errors.Is(served, http.ErrServerClosed) {
		err = errors.Join(err, served)
	}
	s.metricsL = nil
	if err != nil {
		return fmt.Errorf("stopping metrics listener: %w", err)
	}
	return nil
}
