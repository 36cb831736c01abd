package notifications

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/relations"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Service evaluates push rules on the event stream and keeps the
// notifications and unread counts it yields.
type Service struct {
	db     *storage.DB
	server string
	// rooms is set by Start: the worker reads events and power levels
	// through it; room in turn calls the hooks, which need none of it.
	rooms    *room.Service
	rules    *push.Service
	rels     *relations.Store
	notifier *notifier.Notifier
	log      *slog.Logger
	sink     push.Sink
	evaluate bool
	now      func() time.Time

	// wake holds a pending wake-up of the worker (capacity one).
	wake chan struct{}
	done chan struct{}

	// mu guards the per-room cache and the evaluated position.
	mu    sync.Mutex
	cache map[id.RoomID]*roomInfo
	// gens counts state changes per cached room, so that a fill that
	// read the state before a change does not enter the cache after it.
	gens map[id.RoomID]uint64
	// evaluated is the stream position up to which events are evaluated
	// and their notifications committed; caught is closed and replaced
	// each time it moves.
	evaluated int64
	caught    chan struct{}
	// counts holds the unread counts of the users /sync asked for, kept
	// current by the worker (increments, applied after commit) and
	// dropped on receipts; version counts each user's changes, and
	// inflight the worker transactions that may change them, so that a
	// fill racing with a change does not enter the cache.
	counts   map[id.UserID]map[id.RoomID]*RoomCounts
	version  map[id.UserID]uint64
	inflight map[id.UserID]int
	// gaveUp holds the users whose syncs sent events before their
	// evaluation was done (SyncWait passed), lastWake when the worker
	// last woke them for the counts.
	gaveUp   map[id.UserID]struct{}
	lastWake time.Time
	// failing is set while the worker's batches fail: syncs then do not
	// wait for it.
	failing bool
}

// Option configures a Service.
type Option func(*Service)

// WithSink hands every notification recorded to sink, in the transaction
// that records it (pusher delivery). Without it notifications are only
// counted and listed.
func WithSink(sink push.Sink) Option { return func(s *Service) { s.sink = sink } }

// WithEvaluation turns push rule evaluation on or off (on by default).
// Off, no notifications are recorded and the worker's cursor jumps to the
// newest event at start: what was sent meanwhile is never evaluated.
func WithEvaluation(on bool) Option { return func(s *Service) { s.evaluate = on } }

// New returns the notifications service of the server named serverName.
// Start runs its worker.
func New(db *storage.DB, serverName string, rules *push.Service, rels *relations.Store, n *notifier.Notifier, log *slog.Logger, opts ...Option) *Service {
	s := &Service{db: db, server: serverName, rules: rules, rels: rels, notifier: n, log: log, evaluate: true, now: time.Now,
		wake: make(chan struct{}, 1), cache: map[id.RoomID]*roomInfo{}, gens: map[id.RoomID]uint64{},
		caught: make(chan struct{}), counts: map[id.UserID]map[id.RoomID]*RoomCounts{},
		version: map[id.UserID]uint64{}, inflight: map[id.UserID]int{}, gaveUp: map[id.UserID]struct{}{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Start runs the worker over rooms' events until ctx ends; Wait returns
// once it has stopped. It evaluates at once what was stored before the
// start and not yet evaluated.
func (s *Service) Start(ctx context.Context, rooms *room.Service) error {
	s.rooms = rooms
	cursor, err := s.loadCursor(ctx)
	if err != nil {
		return err
	}
	if !s.evaluate {
		upto, err := s.db.CurrentID(ctx, "stream")
		if err != nil {
			return err
		}
		if err := s.db.WriteTx(ctx, func(tx *storage.Tx) error { return storeCursor(ctx, tx, upto) }); err != nil {
			return fmt.Errorf("moving the notification cursor: %w", err)
		}
		s.published(upto, true)
		return nil
	}
	s.published(cursor, false)
	s.done = make(chan struct{})
	go s.run(ctx, cursor)
	return nil
}

// Wait blocks until the worker started by Start has stopped.
func (s *Service) Wait() {
	if s.done != nil {
		<-s.done
	}
}

// poke wakes the worker; a pending wake-up already covers this one.
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run evaluates batches until it has caught up with the stream, then
// waits for a wake-up. A failed batch is retried after a pause, from the
// same cursor: nothing of it was committed.
func (s *Service) run(ctx context.Context, cursor int64) {
	defer close(s.done)
	for {
		next, more, err := s.batch(ctx, cursor)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("evaluating push rules failed; retrying", "after", cursor, "err", err)
			// Syncs stop holding events back for a worker that fails
			// (see WaitEvaluated); the waiting ones go on now.
			s.mu.Lock()
			s.failing = true
			wake := s.takeGaveUpLocked()
			s.mu.Unlock()
			s.notifier.Notify(notifier.Notifications, wake...)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		s.mu.Lock()
		s.failing = false
		s.mu.Unlock()
		cursor = next
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
	}
}

// published records that everything up to pos is evaluated; caughtUp
// says no more events wait.
func (s *Service) published(pos int64, caughtUp bool) {
	s.mu.Lock()
	wake := s.publishedLocked(pos, caughtUp)
	s.mu.Unlock()
	s.notifier.Notify(notifier.Notifications, wake...)
}

// publishedLocked moves the evaluated position to pos and returns the
// users to wake for the counts they went on without: when the worker has
// caught up, or wakeEvery after the last such wake-up. s.mu is held.
func (s *Service) publishedLocked(pos int64, caughtUp bool) []id.UserID {
	if pos > s.evaluated {
		s.evaluated = pos
		close(s.caught)
		s.caught = make(chan struct{})
	}
	if len(s.gaveUp) == 0 || (!caughtUp && time.Since(s.lastWake) < wakeEvery) {
		return nil
	}
	s.lastWake = time.Now()
	return s.takeGaveUpLocked()
}

// takeGaveUpLocked empties gaveUp into a list. s.mu is held.
func (s *Service) takeGaveUpLocked() []id.UserID {
	if len(s.gaveUp) == 0 {
		return nil
	}
	out := make([]id.UserID, 0, len(s.gaveUp))
	for u := range s.gaveUp {
		out = append(out, u)
	}
	clear(s.gaveUp)
	return out
}

// SyncWait bounds how long a sync waits for the events it is about to
// send to be evaluated, so that their count changes come with them (spec
// "Server behaviour": "The updated notification count from a new event
// MUST appear in the same /sync response as the event itself"). Past it
// (overload, a backlog after a restart) the events go out first and the
// counts follow: the worker wakes such syncs when it catches up, or once
// a second while it lags (wakeEvery).
const SyncWait = 100 * time.Millisecond

// wakeEvery is how often a lagging worker wakes the syncs that went on
// without its counts.
const wakeEvery = time.Second

// WaitEvaluated blocks until the events up to stream position pos have
// been evaluated and their counts committed, ctx ends, or SyncWait
// passes, and returns the position evaluated up to (pos when evaluation
// is off or failing). When that is below pos, the worker wakes user
// later (notifier Notifications) for the counts it then commits.
func (s *Service) WaitEvaluated(ctx context.Context, user id.UserID, pos int64) int64 {
	if !s.evaluate {
		return pos
	}
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		evaluated, ch, failing := s.evaluated, s.caught, s.failing
		s.mu.Unlock()
		if evaluated >= pos || failing {
			return pos
		}
		if timeout == nil {
			// Positions taken by receipts or account data move no
			// worker by themselves.
			s.poke()
			t := time.NewTimer(SyncWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
		case <-timeout:
		}
		// Under the lock the worker publishes with: either it published
		// before (and the position says so) or it wakes the user.
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.evaluated >= pos || s.failing {
			return pos
		}
		s.gaveUp[user] = struct{}{}
		return s.evaluated
	}
}

var _ room.Indexer = (*Service)(nil)

// EventStored wakes the worker once the event's transaction commits.
func (s *Service) EventStored(_ context.Context, tx *storage.Tx, _ *room.Stored) error {
	if s.evaluate {
		tx.AfterCommit(s.poke)
	}
	return nil
}

// EventRedacted keeps the notifications of a redacted event: it was
// notified, and the count stays until the user reads past it.
func (s *Service) EventRedacted(context.Context, *storage.Tx, id.EventID) error { return nil }

// RoomStateChanged drops the room's cached members and power levels once
// the change commits (room.StateHook).
func (s *Service) RoomStateChanged(_ context.Context, tx *storage.Tx, roomID id.RoomID, _ []room.StateChange,
	_ func(evType, stateKey string) (*pdu.Event, error)) error {
	tx.AfterCommit(func() {
		s.mu.Lock()
		delete(s.cache, roomID)
		s.gens[roomID]++
		s.mu.Unlock()
	})
	return nil
}
