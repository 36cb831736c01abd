package clientsync

import (
	"context"
	"sort"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/room"
)

// StreamRequest asks for the legacy event stream (GET /events).
type StreamRequest struct {
	User id.UserID
	// Room limits the stream to one room, which the user may be peeking
	// at rather than joined to (peeking_events.yaml); the caller checks
	// that they may read it.
	Room id.RoomID
	// From is the position to stream from; nil means now.
	From    *int64
	Timeout time.Duration
	Limit   int
}

// Stream answers the legacy event stream (old_sync.yaml getEvents, and
// peeking_events.yaml with a room): the timeline events after the from
// position in the user's rooms (or the one room) that the user may see,
// oldest first, at most Limit. With none yet, it waits for the notifier
// up to the timeout, the way /sync does. It returns the events, the
// position they start from and the position the next call streams from.
func (s *Service) Stream(ctx context.Context, req StreamRequest) ([]*room.Stored, int64, int64, error) {
	now, err := s.db.CurrentID(ctx, "stream")
	if err != nil {
		return nil, 0, 0, err
	}
	from := now
	if req.From != nil {
		from = min(max(*req.From, 0), now)
	}
	waitCtx := ctx
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	for {
		// The generation is read before the database, as in Sync.
		var gen uint64
		if req.Room != "" {
			gen = s.notifier.RoomGeneration(req.Room)
		} else {
			gen = s.notifier.Generation(req.User)
		}
		if now, err = s.db.CurrentID(ctx, "stream"); err != nil {
			return nil, 0, 0, err
		}
		evs, end, err := s.streamEvents(ctx, req, from, now)
		if err != nil {
			return nil, 0, 0, err
		}
		if len(evs) > 0 || waitCtx == ctx {
			return evs, from, end, nil
		}
		var woke bool
		if req.Room != "" {
			woke = s.notifier.WaitRoom(waitCtx, req.Room, gen)
		} else {
			woke = s.notifier.Wait(waitCtx, req.User, gen)
		}
		if !woke {
			return nil, from, now, nil
		}
	}
}

// streamEvents collects the events of Stream in (from, now].
func (s *Service) streamEvents(ctx context.Context, req StreamRequest, from, now int64) ([]*room.Stored, int64, error) {
	// upto is the last position of each room the user may stream: now
	// while joined (or peeking), their departure after leaving.
	upto := map[id.RoomID]int64{}
	var own []*room.Stored
	if req.Room != "" {
		upto[req.Room] = now
	} else {
		ms, err := s.rooms.LocalMemberships(ctx, req.User, 0)
		if err != nil {
			return nil, 0, err
		}
		for _, m := range ms {
			switch {
			case m.Membership == "join":
				upto[m.RoomID] = now
			case m.StreamPos > from && m.StreamPos <= now:
				if m.Membership == "invite" || m.Membership == "knock" {
					// The user's own invite is theirs to see whatever
					// the history visibility; the room's events are not.
					if ev, err := s.rooms.Event(ctx, m.EventID); err == nil && !ev.Outlier {
						own = append(own, ev)
					}
					continue
				}
				upto[m.RoomID] = m.StreamPos
			}
		}
	}
	active, err := s.rooms.RoomsWithEventsSince(ctx, from)
	if err != nil {
		return nil, 0, err
	}
	ignored, err := s.accountDataStore.Ignored(ctx, req.User)
	if err != nil {
		return nil, 0, err
	}
	// Invites from ignored users are not shown (spec: Ignoring Users),
	// though they are state events.
	kept := own[:0]
	for _, ev := range own {
		if !ignored[ev.Sender] {
			kept = append(kept, ev)
		}
	}
	own = kept
	var evs []*room.Stored
	for roomID, last := range upto {
		if p, ok := active[roomID]; !ok || p <= from {
			continue
		}
		page, err := s.rooms.Timeline(ctx, roomID, room.Range{After: from, Before: last + 1, Limit: req.Limit + 1})
		if err != nil {
			return nil, 0, err
		}
		evs = append(evs, page...)
	}
	if evs, err = s.rooms.Visible(ctx, req.User, evs); err != nil {
		return nil, 0, err
	}
	evs = WithoutIgnored(ignored, evs)
	evs = append(evs, own...)
	sort.Slice(evs, func(i, j int) bool { return evs[i].StreamPos < evs[j].StreamPos })
	if len(evs) > req.Limit {
		// Every room gave its first Limit+1 events, so none is missing
		// up to the last one kept.
		evs = evs[:req.Limit]
		return evs, evs[len(evs)-1].StreamPos, nil
	}
	return evs, now, nil
}

// visibleTimeline drops from a /sync timeline the events the user may not
// see under the room's history visibility. The events after a joined
// user's latest membership change are theirs, so a steady sync checks
// nothing; a first sync after joining, or a departure, does.
func (s *Service) visibleTimeline(ctx context.Context, user id.UserID, m room.Membership, evs []*room.Stored) ([]*room.Stored, error) {
	if len(evs) == 0 || (m.Membership == "join" && evs[0].StreamPos > m.StreamPos) {
		return evs, nil
	}
	return s.rooms.Visible(ctx, user, evs)
}
