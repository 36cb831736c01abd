package clientsync

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/notifications"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/room"
)

// The exported helpers below are the parts of /sync that sliding sync
// (internal/slidingsync) builds on, with the caches /sync keeps, so both
// endpoints answer alike and a change to one rule changes both.

// CurrentWake returns the user's notifier generation with its epoch. Read
// it before reading the database: a change that lands later moves it.
func (s *Service) CurrentWake(user id.UserID) Wake {
	return Wake{Epoch: s.notifier.Epoch(), Gen: s.notifier.Generation(user)}
}

// ChangedSince returns the kinds of change the user was notified of after
// w (All for a zero Wake or one of another epoch).
func (s *Service) ChangedSince(user id.UserID, w Wake) notifier.Kind {
	return s.changedSince(user, w)
}

// Memberships returns the user's memberships, from the cache /sync fills
// while no membership change was notified after it. wake is the generation
// read before this build. The slice is shared: never change it.
func (s *Service) Memberships(ctx context.Context, user id.UserID, wake Wake) ([]room.Membership, error) {
	return s.localMemberships(ctx, user, wake)
}

// IgnoredUsers returns the users the user ignores (m.ignored_user_list),
// nil for none. Shared: never change it.
func (s *Service) IgnoredUsers(ctx context.Context, user id.UserID, wake Wake) (map[id.UserID]bool, error) {
	return s.ignoredUsers(ctx, user, wake)
}

// KeyCounts returns the device's one-time key counts and unused fallback
// key types, cached like /sync's until a key change is notified.
func (s *Service) KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID, wake Wake) (map[string]int, []string, error) {
	if s.e2ee == nil {
		return map[string]int{}, []string{}, nil
	}
	return s.keyCountsOf(ctx, Request{User: user, Device: device, wake: wake})
}

// InviteState is what a user invited to or knocking on a room is shown
// (invite_state, knock_state): the stripped state at their membership.
func (s *Service) InviteState(ctx context.Context, user id.UserID, m room.Membership) ([]StrippedEvent, error) {
	return s.strippedState(ctx, user, m)
}

// InviteIgnored reports whether the invite came from a user the user
// ignores; such invites are not shown.
func (s *Service) InviteIgnored(ctx context.Context, user id.UserID, ignored map[id.UserID]bool, m room.Membership) (bool, error) {
	return s.inviteIgnored(ctx, Request{User: user, ignored: ignored}, m)
}

// VisibleTimeline drops the events of evs (one room's, oldest first) that
// history visibility hides from the user, whose membership is m.
func (s *Service) VisibleTimeline(ctx context.Context, user id.UserID, m room.Membership, evs []*room.Stored) ([]*room.Stored, error) {
	return s.visibleTimeline(ctx, user, m, evs)
}

// TypingEvent renders an m.typing event listing users.
func TypingEvent(users []id.UserID) json.RawMessage { return typingEvent(users) }

// AccountDataEvent renders an account data entry as a {type, content}
// event.
func AccountDataEvent(e accountdata.Entry) json.RawMessage { return accountDataEvent(e) }

// UnreadCounts returns the user's unread notification counts by room,
// having waited briefly for the events up to now to be evaluated, as
// /sync reports them; nil without push rule evaluation.
func (s *Service) UnreadCounts(ctx context.Context, user id.UserID, now int64) (map[id.RoomID]*notifications.RoomCounts, error) {
	counts, _, err := s.unreadCounts(ctx, &Request{User: user}, now)
	return counts, err
}
