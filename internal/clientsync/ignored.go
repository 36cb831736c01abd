package clientsync

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/room"
)

// cachedIgnored is a user's ignore list as of a notifier generation.
// Shared: read it, never change it.
type cachedIgnored struct {
	wake  Wake
	users map[id.UserID]bool
}

// ignoredUsers returns the users the user ignores (nil for none), from the
// cache while no account data change was notified after it was filled, so
// a woken sync reads nothing. A change applies from the next sync on: as
// in Synapse, what was sent before is not sent again.
func (s *Service) ignoredUsers(ctx context.Context, user id.UserID, wake Wake) (map[id.UserID]bool, error) {
	if c, ok := s.ignored.Get(user); ok && s.changedSince(user, c.wake)&notifier.AccountData == 0 {
		return c.users, nil
	}
	users, err := s.accountDataStore.Ignored(ctx, user)
	if err != nil {
		return nil, err
	}
	s.ignored.Add(user, cachedIgnored{wake: wake, users: users})
	return users, nil
}

// hidesEvent reports whether the timeline leaves ev out because its sender
// is ignored. State events stay: the room's state must remain whole.
func (req *Request) hidesEvent(ev *room.Stored) bool {
	return Hides(req.ignored, ev)
}

// Hides reports whether ev is left out for a user ignoring the users in
// ignored: a non-state event of one of them (spec: Ignoring Users). Every
// path returning events to a client applies it.
func Hides(ignored map[id.UserID]bool, ev *room.Stored) bool {
	return len(ignored) > 0 && !ev.IsState() && ignored[ev.Sender]
}

// WithoutIgnored returns evs without those Hides leaves out.
func WithoutIgnored(ignored map[id.UserID]bool, evs []*room.Stored) []*room.Stored {
	if len(ignored) == 0 {
		return evs
	}
	out := evs[:0:0]
	for _, ev := range evs {
		if !Hides(ignored, ev) {
			out = append(out, ev)
		}
	}
	return out
}

// withoutIgnoredUsers returns users without the ignored ones.
func withoutIgnoredUsers(ignored map[id.UserID]bool, users []id.UserID) []id.UserID {
	if len(ignored) == 0 {
		return users
	}
	out := users[:0:0]
	for _, u := range users {
		if !ignored[u] {
			out = append(out, u)
		}
	}
	return out
}
