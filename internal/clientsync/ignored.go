package clientsync

import (
	"context"
	"encoding/json"
	"errors"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/room"
)

// ignoredUserList is the global account data type listing the users whose
// invites and messages a user does not want to see (spec: Ignoring Users).
const ignoredUserList = "m.ignored_user_list"

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
	raw, err := s.accountDataStore.Get(ctx, user, "", ignoredUserList)
	if err != nil && !errors.Is(err, mxerr.NotFound) {
		return nil, err
	}
	var users map[id.UserID]bool
	if len(raw) > 0 {
		var content struct {
			IgnoredUsers map[id.UserID]json.RawMessage `json:"ignored_users"`
		}
		if json.Unmarshal(raw, &content) == nil && len(content.IgnoredUsers) > 0 {
			users = make(map[id.UserID]bool, len(content.IgnoredUsers))
			for u := range content.IgnoredUsers {
				users[u] = true
			}
		}
	}
	s.ignored.Add(user, cachedIgnored{wake: wake, users: users})
	return users, nil
}

// hidesEvent reports whether the timeline leaves ev out because its sender
// is ignored. State events stay: the room's state must remain whole.
func (req *Request) hidesEvent(ev *room.Stored) bool {
	return len(req.ignored) > 0 && !ev.IsState() && req.ignored[ev.Sender]
}
