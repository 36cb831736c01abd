package accountdata

import (
	"context"
	"encoding/json"
	"errors"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// InvitePermissionType is the global account data in which a user blocks
// invites (spec v1.18, Invite permission).
const InvitePermissionType = "m.invite_permission_config"

// InvitesBlocked reports whether user's m.invite_permission_config says
// default_action "block". A missing, invalid or unknown value means that
// invites are received as normal.
func (s *Store) InvitesBlocked(ctx context.Context, user id.UserID) (bool, error) {
	raw, err := s.Get(ctx, user, "", InvitePermissionType)
	if errors.Is(err, mxerr.NotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var c struct {
		DefaultAction any `json:"default_action"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return false, nil
	}
	return c.DefaultAction == "block", nil
}

// CheckInvite answers M_INVITE_BLOCKED when user blocks invites.
func (s *Store) CheckInvite(ctx context.Context, user id.UserID) error {
	blocked, err := s.InvitesBlocked(ctx, user)
	if err != nil {
		return err
	}
	if blocked {
		return mxerr.InviteBlocked.With("%s does not accept invites", user)
	}
	return nil
}
