package upgrade

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// Joined copies a local user's settings about a room's predecessor (tags,
// m.direct entry, push rules) to the room when they join it, as Synapse
// does on a join of an upgraded room: that is how members who were not
// local members at the upgrade — users of other servers than the
// upgrader's, or who join later — keep them. homeserver calls it from
// room's membership hook, after the join is committed. The copy is
// idempotent (the upgrade's own copy may have run), and tags the user
// already set on the new room are kept.
//
// For a room upgraded on another server, the first local joiner also
// brings the old room's local aliases, directory listing and the other
// local members' settings over.
func (s *Service) Joined(ctx context.Context, roomID id.RoomID, user id.UserID) {
	create, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.create", "")
	if err != nil || create == nil {
		return
	}
	var c struct {
		Predecessor *struct {
			RoomID id.RoomID `json:"room_id"`
		} `json:"predecessor"`
	}
	if json.Unmarshal(create.Content, &c) != nil || c.Predecessor == nil || c.Predecessor.RoomID == "" || c.Predecessor.RoomID == roomID {
		return
	}
	old := c.Predecessor.RoomID
	if err := s.copyMember(ctx, user, old, roomID); err != nil {
		s.log.Warn("copying a joiner's settings from the predecessor room failed", "room_id", roomID, "user_id", user, "err", err)
	}
	// A room upgraded on another server: with its first local member this
	// server learns of the upgrade, and does here what the upgrade did on
	// the upgrader's server. The local aliases and directory listing of
	// the old room move, and every local member of the old room gets
	// their settings copied (Synapse's transfer on a remote join). Later
	// joins find other local members and leave it done.
	if create.Sender.Homeserver() == s.rooms.ServerName() {
		return
	}
	joined, err := s.rooms.LocalJoined(ctx, roomID)
	if err != nil || len(joined) != 1 || joined[0] != user {
		return
	}
	if err := s.rooms.MoveAliases(ctx, old, roomID); err != nil {
		s.log.Warn("moving aliases to an upgraded room failed", "room_id", old, "err", err)
	}
	s.moveListing(ctx, old, roomID)
	s.copyMembers(ctx, old, roomID)
}
