package clientsync

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifications"
)

// WithNotifications fills unread_notifications (and, when the filter asks,
// unread_thread_notifications) from the push rule evaluation's counts.
// Without it every room reports zero.
func WithNotifications(n *notifications.Service) Option {
	return func(s *Service) { s.notifications = n }
}

// unreadCounts returns the user's counts by room (notifications keeps
// them in memory), having waited briefly (notifications.SyncWait) for the
// events up to now to be evaluated, and the position they were evaluated
// up to, which next_batch carries when it is below now (Token.Counted).
func (s *Service) unreadCounts(ctx context.Context, req *Request, now int64) (map[id.RoomID]*notifications.RoomCounts, int64, error) {
	if s.notifications == nil {
		return nil, now, nil
	}
	upto := s.notifications.WaitEvaluated(ctx, req.User, now)
	counts, err := s.notifications.Unread(ctx, req.User)
	if err != nil {
		return nil, 0, err
	}
	return counts, upto, nil
}

// countsChanged reports whether the room's counts changed in (since, now]
// or, when the since token's response went out before the evaluation of
// everything it sent, after what it had counted. A change is at the
// position of the event or receipt that made it.
func (req *Request) countsChanged(roomID id.RoomID, since, now int64) bool {
	rc := req.unread[roomID]
	if req.Since != nil && req.Since.Counted > 0 {
		since = min(since, req.Since.Counted)
	}
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
