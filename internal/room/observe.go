package room

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/storage"
)

// PersistObserver is told how long each write transaction that stored an
// event took: kind is "local" for events of our users, "received" for
// events from other servers.
type PersistObserver func(kind string, took time.Duration)

// WithPersistObserver reports event persist latency to o (metrics).
func WithPersistObserver(o PersistObserver) Option {
	return func(s *Service) { s.observePersist = o }
}

// persisted reports the write transaction of one event begun at start.
func (s *Service) persisted(kind string, start time.Time) {
	if s.observePersist != nil {
		s.observePersist(kind, time.Since(start))
	}
}

// StateChange is one entry of a room's current state that a write
// changed: Event is the entry's new event, or nil when the entry left the
// state (a state reset).
type StateChange struct {
	Key   pdu.StateKey
	Event *pdu.Event
}

// StateHook is told of every change to a room's current state, inside the
// write transaction that makes it, so what it derives (the user directory)
// commits or rolls back with the event. lookup reads the room's new
// current state. An error aborts the transaction.
type StateHook func(ctx context.Context, tx *storage.Tx, roomID id.RoomID, changes []StateChange,
	lookup func(evType, stateKey string) (*pdu.Event, error)) error

// WithStateHook calls h for every change of a room's current state.
func WithStateHook(h StateHook) Option {
	return func(s *Service) { s.stateHooks = append(s.stateHooks, h) }
}

// stateChanged runs the state hooks for the move from prev to next.
func (s *Service) stateChanged(ctx context.Context, tx *storage.Tx, work *info, prev, next State) error {
	if len(s.stateHooks) == 0 {
		return nil
	}
	var changes []StateChange
	for key, ref := range next {
		if old, had := prev[key]; had && old.NID == ref.NID {
			continue
		}
		ev, err := s.eventFor(ctx, work, ref.ID)
		if err != nil {
			return fmt.Errorf("loading new state event %s: %w", ref.ID, err)
		}
		changes = append(changes, StateChange{Key: key, Event: ev.Event})
	}
	for key := range prev {
		if _, ok := next[key]; !ok {
			changes = append(changes, StateChange{Key: key})
		}
	}
	if len(changes) == 0 {
		return nil
	}
	// In key order, so that hooks writing rows shared between rooms (a
	// remote user's directory entry) lock them in the same order in
	// concurrent transactions of different rooms, which cannot deadlock.
	slices.SortFunc(changes, func(a, b StateChange) int {
		return cmp.Or(cmp.Compare(a.Key.Type, b.Key.Type), cmp.Compare(a.Key.StateKey, b.Key.StateKey))
	})
	lookup := func(evType, stateKey string) (*pdu.Event, error) {
		ref, ok := next[pdu.StateKey{Type: evType, StateKey: stateKey}]
		if !ok {
			return nil, nil
		}
		ev, err := s.eventFor(ctx, work, ref.ID)
		if err != nil {
			return nil, err
		}
		return ev.Event, nil
	}
	for _, h := range s.stateHooks {
		if err := h(ctx, tx, work.roomID, changes, lookup); err != nil {
			return err
		}
	}
	return nil
}
