package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// restrictOld raises events_default and invite in the old room to the
// greater of 50 and users_default+1 (spec step 6), so that only the
// room's moderators can still speak or invite there.
func (s *Service) restrictOld(ctx context.Context, req Request, old *oldState) {
	pl := map[string]json.RawMessage{}
	if c, ok := old.byType["m.room.power_levels"]; ok {
		_ = json.Unmarshal(c, &pl)
	}
	restricted := max(50, intField(pl, "users_default", 0)+1)
	changed := false
	for _, k := range []string{"events_default", "invite"} {
		if intField(pl, k, 0) < restricted {
			pl[k], _ = json.Marshal(restricted)
			changed = true
		}
	}
	if !changed {
		return
	}
	content, _ := json.Marshal(pl)
	if _, err := s.rooms.Send(ctx, stateProto(req.User, "m.room.power_levels", "", content, req.Room), nil); err != nil {
		s.log.Warn("restricting the power levels of an upgraded room failed", "room_id", req.Room, "err", err)
	}
}

// moveAliases moves the local aliases to the new room (spec step 4) and
// takes the canonical alias off the old room, whose copy is in the new
// room's initial state (Synapse).
func (s *Service) moveAliases(ctx context.Context, req Request, old *oldState, newID id.RoomID) {
	if err := s.rooms.MoveAliases(ctx, req.Room, newID); err != nil {
		s.log.Warn("moving aliases to an upgraded room failed", "room_id", req.Room, "err", err)
	}
	c, ok := old.byType["m.room.canonical_alias"]
	if !ok {
		return
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(c, &m) != nil || (m["alias"] == nil && m["alt_aliases"] == nil) {
		return
	}
	if _, err := s.rooms.Send(ctx, stateProto(req.User, "m.room.canonical_alias", "", json.RawMessage("{}"), req.Room), nil); err != nil {
		s.log.Warn("removing the canonical alias of an upgraded room failed", "room_id", req.Room, "err", err)
	}
}

// moveListing moves the old room's place in the public directory to the
// new room (Synapse).
func (s *Service) moveListing(ctx context.Context, from, to id.RoomID) {
	public, err := s.rooms.Visibility(ctx, from)
	if err == nil && public {
		if err = s.rooms.SetVisibility(ctx, from, false); err == nil {
			err = s.rooms.SetVisibility(ctx, to, true)
		}
	}
	if err != nil {
		s.log.Warn("moving an upgraded room's directory listing failed", "room_id", from, "err", err)
	}
}

// copyMembers copies, for each local member of the old room, what they
// set about it: its tags (m.tag), its entry in their m.direct, and their
// push rules about it, as Synapse's copy_user_state_on_room_upgrade does,
// so the new room appears where the old one was in their room list and
// notifies as it did.
func (s *Service) copyMembers(ctx context.Context, from, to id.RoomID) {
	members, err := s.rooms.LocalJoined(ctx, from)
	if err != nil {
		s.log.Warn("listing the local members of an upgraded room failed", "room_id", from, "err", err)
		return
	}
	slices.Sort(members)
	for _, u := range members {
		if err := s.copyMember(ctx, u, from, to); err != nil {
			s.log.Warn("copying a member's settings to an upgraded room failed", "room_id", from, "user_id", u, "err", err)
		}
	}
}

func (s *Service) copyMember(ctx context.Context, user id.UserID, from, to id.RoomID) error {
	tags, err := s.accountData.Get(ctx, user, from, "m.tag")
	switch {
	case err == nil:
		// Tags already set on the new room win (a second copy, on join).
		_, err := s.accountData.Get(ctx, user, to, "m.tag")
		if errors.Is(err, mxerr.NotFound) {
			_, err = s.accountData.Put(ctx, user, to, "m.tag", tags)
		}
		if err != nil {
			return err
		}
	case !errors.Is(err, mxerr.NotFound):
		return err
	}
	if err := s.copyDirect(ctx, user, from, to); err != nil {
		return err
	}
	return s.push.CopyRoomRules(ctx, user, from, to)
}

// copyDirect adds the new room next to the old one in each of the user's
// m.direct lists that holds it.
func (s *Service) copyDirect(ctx context.Context, user id.UserID, from, to id.RoomID) error {
	raw, err := s.accountData.Get(ctx, user, "", "m.direct")
	if errors.Is(err, mxerr.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !mentions(raw, from) {
		return nil
	}
	_, err = s.accountData.Update(ctx, user, "", "m.direct", func(old json.RawMessage) (json.RawMessage, error) {
		var direct map[string]json.RawMessage
		if err := json.Unmarshal(old, &direct); err != nil {
			return old, nil
		}
		for k, v := range direct {
			var rooms []id.RoomID
			if json.Unmarshal(v, &rooms) == nil && slices.Contains(rooms, from) && !slices.Contains(rooms, to) {
				direct[k], _ = json.Marshal(append(rooms, to))
			}
		}
		return json.Marshal(direct)
	})
	return err
}

// mentions reports whether an m.direct content lists the room.
func mentions(raw json.RawMessage, roomID id.RoomID) bool {
	var direct map[string][]json.RawMessage
	_ = json.Unmarshal(raw, &direct)
	for _, rooms := range direct {
		for _, r := range rooms {
			var s id.RoomID
			if json.Unmarshal(r, &s) == nil && s == roomID {
				return true
			}
		}
	}
	return false
}
