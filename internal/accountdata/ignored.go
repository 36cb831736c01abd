package accountdata

import (
	"context"
	"encoding/json"
	"errors"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// IgnoredUserList is the global account data type listing the users whose
// events a user does not want to see (spec: Ignoring Users).
const IgnoredUserList = "m.ignored_user_list"

// Ignored returns the users user ignores, nil for none. Every path that
// hands a user others' events, invites, typing, receipts, to-device
// messages or presence leaves out those of these users (state events
// excepted, so that rooms look the same).
func (s *Store) Ignored(ctx context.Context, user id.UserID) (map[id.UserID]bool, error) {
	raw, err := s.Get(ctx, user, "", IgnoredUserList)
	if err != nil && !errors.Is(err, mxerr.NotFound) {
		return nil, err
	}
	return ParseIgnored(raw), nil
}

// ParseIgnored reads the users of m.ignored_user_list content; content
// that does not parse ignores nobody.
func ParseIgnored(raw json.RawMessage) map[id.UserID]bool {
	if len(raw) == 0 {
		return nil
	}
	var content struct {
		IgnoredUsers map[id.UserID]json.RawMessage `json:"ignored_users"`
	}
	if json.Unmarshal(raw, &content) != nil || len(content.IgnoredUsers) == 0 {
		return nil
	}
	users := make(map[id.UserID]bool, len(content.IgnoredUsers))
	for u := range content.IgnoredUsers {
		users[u] = true
	}
	return users
}
