package clientsync

import (
	"context"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifications"
	"github.com/myelin-chat/myelin/internal/notifier"
)

// WithNotifications fills unread_notifications (and, when the filter asks,
// unread_thread_notifications) from the push rule evaluation's counts.
// Without it every room reports zero.
func WithNotifications(n *notifications.Service) Option {
	return func(s *Service) {
		s.notifications = n
		s.counts, _ = lru.New[id.UserID, cachedCounts](maxCachedMemberships)
	}
}

// evaluationWait bounds how long a sync waits for the events it is about
// to send to be evaluated, so that their count changes come with them
// (spec: "The updated notification count from a new event MUST appear in
// the same /sync response as the event itself"). Past it (overload), the
// counts follow in a later response, which the worker's wake-up starts.
const evaluationWait = 100 * time.Millisecond

// cachedCounts are a user's unread counts as of a notifier generation.
// Shared: read them, never change them.
type cachedCounts struct {
	wake   Wake
	counts map[id.RoomID]*notifications.RoomCounts
}

// unreadCounts returns the user's counts by room, from the cache while no
// count change was notified after it was filled. Before reading, it waits
// (briefly) for the events up to now to be evaluated when events were
// notified.
func (s *Service) unreadCounts(ctx context.Context, req *Request, now int64) (map[id.RoomID]*notifications.RoomCounts, error) {
	if s.notifications == nil {
		return nil, nil
	}
	if req.changed&notifier.Room != 0 {
		s.notifications.WaitEvaluated(ctx, now, evaluationWait)
	}
	// The wait may have let a count change in: read the generation again,
	// so the cache entry is no newer than what it was filled from.
	wake := Wake{Epoch: s.notifier.Epoch(), Gen: s.notifier.Generation(req.User)}
	if c, ok := s.counts.Get(req.User); ok && s.changedSince(req.User, c.wake)&notifier.Notifications == 0 {
		return c.counts, nil
	}
	counts, err := s.notifications.Unread(ctx, req.User)
	if err != nil {
		return nil, err
	}
	if len(counts) <= maxCachedRooms {
		s.counts.Add(req.User, cachedCounts{wake: wake, counts: counts})
	}
	return counts, nil
}

// countsChanged reports whether the room's counts changed in (since, now].
func (req *Request) countsChanged(roomID id.RoomID, since, now int64) bool {
	rc := req.unread[roomID]
	return rc != nil && rc.StreamPos > since && rc.StreamPos <= now
}

// fillUnread sets the room's counts: over the whole room, or, when the
// filter asks for unread_thread_notifications, of the main timeline with
// each thread's apart (spec: /sync, unread_thread_notifications).
func (req *Request) fillUnread(roomID id.RoomID, jr *JoinedRoom) {
	rc := req.unread[roomID]
	if rc == nil {
		return
	}
	if !req.Filter.Room.Timeline.UnreadThreadNotifications {
		t := rc.Total()
		jr.UnreadNotifications = UnreadNotifications{NotificationCount: int(t.Notifications), HighlightCount: int(t.Highlights)}
		return
	}
	for thread, c := range rc.Threads {
		u := UnreadNotifications{NotificationCount: int(c.Notifications), HighlightCount: int(c.Highlights)}
		if thread == "main" {
			jr.UnreadNotifications = u
			continue
		}
		if jr.UnreadThreadNotifications == nil {
			jr.UnreadThreadNotifications = map[id.EventID]UnreadNotifications{}
		}
		jr.UnreadThreadNotifications[id.EventID(thread)] = u
	}
}
