package sender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/myelin-chat/myelin/internal/storage"
)

// Spec limits on one transaction ("Transactions").
const (
	// MaxPDUsPerTxn is the most PDUs one transaction may carry.
	MaxPDUsPerTxn = 50
	// MaxEDUsPerTxn is the most EDUs one transaction may carry.
	MaxEDUsPerTxn = 100
)

// Defaults for the options.
const (
	DefaultMinBackoff    = 2 * time.Second
	DefaultMaxBackoff    = time.Hour
	DefaultMaxRejections = 10
)

// Transport sends one transaction to one destination
// (PUT /_matrix/federation/v1/send/{txnId}). pdus and edus are never nil
// (possibly empty); each EDU is the whole {"edu_type", "content"} object.
// It returns nil only for a 200 answer, whatever the per-PDU results in it,
// and a *StatusError (possibly wrapped) for any other HTTP status, so the
// sender can tell a refusal from an outage. It must honour ctx: Close
// cancels it.
type Transport interface {
	SendTransaction(ctx context.Context, destination string, txnID string, originTS int64, pdus, edus []json.RawMessage) error
}

// StatusError is a non-2xx answer to a transaction, as the Transport
// reports it.
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// RetryAfter is the destination's requested wait (retry_after_ms of an
	// M_LIMIT_EXCEEDED or a Retry-After header), or 0.
	RetryAfter time.Duration
	// Err is the underlying error, e.g. the Matrix error in the body.
	Err error
}

func (e *StatusError) Error() string {
	if e.Err == nil {
		return "HTTP " + strconv.Itoa(e.Status)
	}
	return "HTTP " + strconv.Itoa(e.Status) + ": " + e.Err.Error()
}

func (e *StatusError) Unwrap() error { return e.Err }

// refused reports whether the status means the destination will not accept
// this transaction however often it is retried.
func (e *StatusError) refused() bool {
	switch e.Status {
	case 400, 401, 403, 413:
		return true
	}
	return false
}

// Option configures a Sender.
type Option func(*Sender)

// WithClock sets the source of the current time, used for transaction
// timestamps and EDU expiry. Backoff delays are real timers.
func WithClock(now func() time.Time) Option { return func(s *Sender) { s.now = now } }

// WithBackoff sets the first retry delay after a failure and the cap the
// doubling delays stop at.
func WithBackoff(minDelay, maxDelay time.Duration) Option {
	return func(s *Sender) { s.minBackoff, s.maxBackoff = minDelay, max(minDelay, maxDelay) }
}

// WithMaxRejections sets how many consecutive refusals (400, 401, 403, 413)
// of one transaction the sender accepts before dropping it.
func WithMaxRejections(n int) Option { return func(s *Sender) { s.maxRejections = max(1, n) } }

// Sender queues PDUs and EDUs per destination and delivers them. Its
// methods are safe for concurrent use.
type Sender struct {
	db            *storage.DB
	origin        string
	transport     Transport
	log           *slog.Logger
	now           func() time.Time
	minBackoff    time.Duration
	maxBackoff    time.Duration
	maxRejections int
	finisher      finisher

	mu      sync.Mutex
	ctx     context.Context // workers' context; nil until Start
	cancel  context.CancelFunc
	closed  bool
	workers map[string]*worker // destinations with a running worker
	wg      sync.WaitGroup

	queuedPDUs, queuedEDUs   atomic.Int64
	sentPDUs, sentEDUs       atomic.Int64
	sentTxns, failedAttempts atomic.Int64
	droppedPDUs, droppedEDUs atomic.Int64
	backingOff               atomic.Int64
}

// New returns a Sender that sends as origin (our server name) through t.
// Nothing is sent before Start.
func New(db *storage.DB, origin string, t Transport, log *slog.Logger, opts ...Option) *Sender {
	s := &Sender{
		db: db, origin: origin, transport: t, log: log, now: time.Now,
		minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff, maxRejections: DefaultMaxRejections,
		workers: make(map[string]*worker),
	}
	s.finisher.db = db
	for _, o := range opts {
		o(s)
	}
	return s
}

// EnqueuePDU durably queues a PDU (in its federation JSON) for
// destinations inside the caller's write transaction, so the event and its
// queue entries commit together; the destinations' workers are woken after
// commit. Our own server and repeated names are skipped.
func (s *Sender) EnqueuePDU(ctx context.Context, tx *storage.Tx, destinations []string, pduJSON []byte) error {
	dests, err := s.remote(destinations)
	if err != nil || len(dests) == 0 {
		return err
	}
	trimmed := bytes.TrimSpace(pduJSON)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return errors.New("queueing a PDU: not a JSON object")
	}
	if err := enqueue(ctx, tx, dests, kindPDU, "", trimmed, s.now()); err != nil {
		return fmt.Errorf("queueing a PDU for %d servers: %w", len(dests), err)
	}
	tx.AfterCommit(func() {
		s.queuedPDUs.Add(int64(len(dests)))
		s.kick(dests)
	})
	return nil
}

// EnqueueEDU durably queues an EDU of eduType with content for
// destinations, in its own write transaction, and wakes their workers.
// Our own server and repeated names are skipped.
func (s *Sender) EnqueueEDU(ctx context.Context, destinations []string, eduType string, content json.RawMessage) error {
	dests, err := s.remote(destinations)
	if err != nil || len(dests) == 0 {
		return err
	}
	if eduType == "" {
		return errors.New("queueing an EDU: empty edu_type")
	}
	body, err := json.Marshal(struct {
		EDUType string          `json:"edu_type"`
		Content json.RawMessage `json:"content"`
	}{eduType, content})
	if err != nil {
		return fmt.Errorf("queueing a %s EDU: content: %w", eduType, err)
	}
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if err := enqueue(ctx, tx, dests, kindEDU, eduType, body, s.now()); err != nil {
			return err
		}
		tx.AfterCommit(func() {
			s.queuedEDUs.Add(int64(len(dests)))
			s.kick(dests)
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("queueing a %s EDU for %d servers: %w", eduType, len(dests), err)
	}
	return nil
}

// remote returns destinations without our own server and without repeats.
func (s *Sender) remote(destinations []string) ([]string, error) {
	out := make([]string, 0, len(destinations))
	seen := make(map[string]bool, len(destinations))
	for _, d := range destinations {
		if d == "" {
			return nil, errors.New("queueing for federation: empty server name")
		}
		if d == s.origin || seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	return out, nil
}

// Start starts delivering, beginning with every destination that has
// queued entries (left from before a restart). Workers run until ctx ends
// or Close. Start is a no-op after the first call or after Close.
func (s *Sender) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx != nil || s.closed {
		return
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.resume(s.ctx)
}

// resume wakes every destination with queued entries, retrying with
// backoff while the database fails.
func (s *Sender) resume(ctx context.Context) {
	defer s.wg.Done()
	delay := s.minBackoff
	for {
		dests, err := queuedDestinations(ctx, s.db)
		if err == nil {
			s.log.Info("federation sender started", "destinations", len(dests))
			s.kick(dests)
			return
		}
		s.log.Error("resuming federation queues", "err", err, "retry_in", delay)
		if !sleep(ctx, delay, nil) {
			return
		}
		delay = min(2*delay, s.maxBackoff)
	}
}

// Close stops every worker and waits for them, cancelling sends in flight.
// Queued entries stay in the database for the next Start.
func (s *Sender) Close() {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Wake tells the sender that destination is reachable again (it has just
// sent us a request, say): a retry it is waiting out a backoff for happens
// now, and its backlog is then sent.
func (s *Sender) Wake(destination string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[destination]; w != nil {
		signal(w.retry)
	}
}

// kick makes sure each destination's worker runs and will look at its
// queue again. It only signals, so it may run inside the storage write
// order (tx.AfterCommit).
func (s *Sender) kick(dests []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.closed {
		return // Start will resume from the database
	}
	for _, d := range dests {
		if w := s.workers[d]; w != nil {
			signal(w.wake)
			continue
		}
		w := &worker{s: s, dest: d, wake: make(chan struct{}, 1), retry: make(chan struct{}, 1)}
		s.workers[d] = w
		s.wg.Add(1)
		go w.run(s.ctx)
	}
}

// signal leaves a token in a one-slot channel without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Stats are counters since New, for metrics. Entry counts are per
// destination: one PDU queued for three servers counts three.
type Stats struct {
	QueuedPDUs, QueuedEDUs int64
	SentPDUs, SentEDUs     int64
	// SentTransactions counts transactions answered 200.
	SentTransactions int64
	// FailedAttempts counts attempts that failed; each retry counts.
	FailedAttempts int64
	// DroppedPDUs and DroppedEDUs count entries given up: in transactions
	// refused MaxRejections times, and (EDUs) ephemeral ones that expired.
	DroppedPDUs, DroppedEDUs int64
	// ActiveDestinations is the number of destinations with a worker now,
	// i.e. with a backlog or a transaction in flight.
	ActiveDestinations int
	// BackingOff is the number of destinations waiting out a backoff now.
	BackingOff int64
}

// Stats returns the current counters.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	active := len(s.workers)
	s.mu.Unlock()
	return Stats{
		QueuedPDUs: s.queuedPDUs.Load(), QueuedEDUs: s.queuedEDUs.Load(),
		SentPDUs: s.sentPDUs.Load(), SentEDUs: s.sentEDUs.Load(),
		SentTransactions: s.sentTxns.Load(), FailedAttempts: s.failedAttempts.Load(),
		DroppedPDUs: s.droppedPDUs.Load(), DroppedEDUs: s.droppedEDUs.Load(),
		ActiveDestinations: active, BackingOff: s.backingOff.Load(),
	}
}
