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
	if err := s.copyMember(ctx, user, c.Predecessor.RoomID, roomID); err != nil {
		s.log.Warn("copying a joiner's settings from the predecessor room failed", "room_id", roomID, "user_id", user, "err", err)
	}
}
