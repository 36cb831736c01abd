package pushers

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/netguard"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Defaults of the options, Synapse's HttpPusher values.
const (
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = time.Hour
	DefaultGiveUpAfter = 24 * time.Hour
	// DefaultConcurrency bounds the gateway requests in flight at once.
	DefaultConcurrency = 16
	// requestTimeout bounds one gateway request.
	requestTimeout = 30 * time.Second
)

// RoomState reads a room's current state for the gateway request (room
// name, canonical alias, the sender's display name). homeserver implements
// it over room.
type RoomState interface {
	// StateContent returns the content of the room's current state event
	// of evType and stateKey, or nil when there is none.
	StateContent(ctx context.Context, roomID id.RoomID, evType, stateKey string) (json.RawMessage, error)
}

// Option configures a Service.
type Option func(*Service)

// WithRoomState sets where room names and display names come from;
// without it those fields are left out of gateway requests.
func WithRoomState(r RoomState) Option { return func(s *Service) { s.rooms = r } }

// WithGuard sets the guard every gateway connection passes. The default
// refuses loopback and private addresses.
func WithGuard(g *netguard.Guard) Option { return func(s *Service) { s.guard = g } }

// WithBackoff sets the first retry delay after a failed delivery and the
// cap the doubling delays stop at.
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(s *Service) { s.minBackoff, s.maxBackoff = minDelay, max(minDelay, maxDelay) }
}

// WithGiveUpAfter sets how long a pusher may keep failing before its
// failing notification is dropped.
func WithGiveUpAfter(d time.Duration) Option { return func(s *Service) { s.giveUpAfter = d } }

// WithConcurrency bounds the gateway requests in flight at once.
func WithConcurrency(n int) Option {
	return func(s *Service) { s.slots = make(chan struct{}, max(1, n)) }
}

// WithClock sets the source of the current time (pushkey_ts, failing
// since). Backoff delays are real timers.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// Service stores pushers and delivers notifications to them. It is the
// push.Sink of the homeserver. Its methods are safe for concurrent use.
type Service struct {
	db          *storage.DB
	log         *slog.Logger
	rooms       RoomState
	guard       *netguard.Guard
	client      *http.Client
	now         func() time.Time
	minBackoff  time.Duration
	maxBackoff  time.Duration
	giveUpAfter time.Duration
	slots       chan struct{}

	mu      sync.Mutex
	ctx     context.Context // workers' context; nil until Start
	cancel  context.CancelFunc
	closed  bool
	workers map[int64]*worker // pushers with a running worker
	wg      sync.WaitGroup

	delivered, failed, rejected, dropped atomic.Int64
}

var _ push.Sink = (*Service)(nil)

// New returns a Service on db. Nothing is delivered before Start.
func New(db *storage.DB, log *slog.Logger, opts ...Option) *Service {
	s := &Service{
		db: db, log: log, guard: netguard.New(nil, nil), now: time.Now,
		minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff, giveUpAfter: DefaultGiveUpAfter,
		slots: make(chan struct{}, DefaultConcurrency), workers: make(map[int64]*worker),
	}
	for _, o := range opts {
		o(s)
	}
	s.client = &http.Client{
		Transport: s.guard.Transport(),
		Timeout:   requestTimeout,
		// A redirect is an answer that is not 2xx: retried, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// Stats counts deliveries since the process started.
type Stats struct {
	// Delivered counts notifications a gateway accepted (2xx).
	Delivered int64
	// Failed counts attempts that failed and will be retried (or were
	// dropped): no connection, a refused address, a non-2xx answer.
	Failed int64
	// Rejected counts pushers removed because their gateway rejected the
	// pushkey.
	Rejected int64
	// Dropped counts notifications given up on after a day of failures.
	Dropped int64
}

// Stats returns the delivery counters.
func (s *Service) Stats() Stats {
	return Stats{Delivered: s.delivered.Load(), Failed: s.failed.Load(), Rejected: s.rejected.Load(), Dropped: s.dropped.Load()}
}

// Start starts delivery: the workers of every pusher with queued
// notifications (left by a previous run) start now, others when Notified
// queues something for them. Workers run until ctx ends or Close.
func (s *Service) Start(ctx context.Context) {
	s.mu.Lock()
	if s.ctx != nil || s.closed {
		s.mu.Unlock()
		return
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.mu.Unlock()
	// Set before the scan: a notification committed after the scan wakes
	// its worker itself.
	ids, err := s.queuedPushers(s.ctx)
	if err != nil {
		s.log.Error("listing pushers with queued notifications failed", "err", err)
		return
	}
	s.kick(ids)
}

// Close stops the workers and waits for them; queued notifications stay
// for the next Start.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// kick wakes the workers of pushers, starting those not running.
func (s *Service) kick(pushers []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.closed {
		return
	}
	for _, p := range pushers {
		if w, ok := s.workers[p]; ok {
			w.kicked = true
			continue
		}
		w := &worker{s: s, pusher: p, backoff: s.minBackoff}
		s.workers[p] = w
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			w.run(s.ctx)
		}()
	}
}
