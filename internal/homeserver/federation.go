package homeserver

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/federationapi"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/sender"
	"github.com/myelin-chat/myelin/internal/tlscert"
)

// transport sends the sender's transactions with the federation client.
// A test can cut it off (Partition) to fork a room's DAG between servers.
type transport struct {
	client      *fedclient.Client
	partitioned atomic.Bool
	mu          sync.Mutex
	blocked     map[string]struct{}
}

var errPartitioned = errors.New("federation partitioned by a test")

// SendTransaction implements sender.Transport.
func (t *transport) SendTransaction(ctx context.Context, dest, txnID string, originTS int64, pdus, edus []json.RawMessage) error {
	if t.partitioned.Load() {
		t.mu.Lock()
		if t.blocked == nil {
			t.blocked = map[string]struct{}{}
		}
		t.blocked[dest] = struct{}{}
		t.mu.Unlock()
		return errPartitioned
	}
	_, err := t.client.SendTransaction(ctx, dest, txnID, fedclient.TransactionReq{OriginServerTS: originTS, PDUs: pdus, EDUs: edus})
	var fe *fedclient.Error
	if errors.As(err, &fe) {
		return &sender.StatusError{Status: fe.Status, Err: err}
	}
	return err
}

// Partition stops (true) or resumes (false) outbound federation
// transactions. It exists for tests of forked DAGs; queued events are
// delivered once the partition ends.
func (s *Server) Partition(on bool) {
	t := s.transport
	t.partitioned.Store(on)
	if on {
		return
	}
	t.mu.Lock()
	blocked := t.blocked
	t.blocked = nil
	t.mu.Unlock()
	for d := range blocked {
		s.sender.Wake(d)
	}
}

// federationRoutes registers the server-server API on mux.
func (s *Server) federationRoutes(mux httpx.Router, api *federationapi.API, keySrv *federationapi.KeyServer, auth *federationapi.Authenticator) {
	adapter := &httpx.Adapter{Log: s.log}
	keySrv.Register(mux, adapter)
	api.Register(mux, func(h httpx.HandlerFunc) httpx.HandlerFunc {
		return auth.Require(func(w http.ResponseWriter, r *http.Request) error {
			// Hearing from a server means it is up: retry its queue now.
			s.sender.Wake(federationapi.Origin(r.Context()))
			return h(w, r)
		})
	})
}

// startFederationListener serves every API over TLS on the federation
// listener, when one is configured.
func (s *Server) startFederationListener() error {
	if s.cfg.Federation.Listen == "" {
		return nil
	}
	tlsCfg, err := tlscert.ServerTLSConfig(s.cfg.Federation, s.cfg.ServerName)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Federation.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Federation.Listen, err)
	}
	s.fedSrv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         tlsCfg,
	}
	s.fedServed = make(chan error, 1)
	go func() { s.fedServed <- s.fedSrv.Serve(tls.NewListener(ln, tlsCfg)) }()
	s.log.Info("federation listening", "addr", ln.Addr().String())
	return nil
}
