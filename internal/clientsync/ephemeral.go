package clientsync

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/room"
)

// roomReceipts holds the receipts of one build that the user may see, by
// room, oldest first.
type roomReceipts map[id.RoomID][]receipts.Receipt

// loadReceipts reads, in one query per few hundred rooms, the receipts
// changed in (since, now] in the rooms the user is joined to and that the
// filter asks ephemeral events for.
func (s *Service) loadReceipts(ctx context.Context, req Request, memberships []room.Membership, since, now int64) (roomReceipts, error) {
	ef := &req.Filter.Room.Ephemeral
	if !ef.Match("m.receipt", "") || req.changed&notifier.Receipts == 0 {
		return roomReceipts{}, nil
	}
	var joined []id.RoomID
	for _, m := range memberships {
		if m.Membership == "join" && m.StreamPos <= now && ef.MatchRoom(m.RoomID) {
			joined = append(joined, m.RoomID)
		}
	}
	rs, err := s.receipts.Since(ctx, joined, req.User, since, now)
	if err != nil || len(req.ignored) == 0 {
		return rs, err
	}
	// Ignored users' receipts are hidden, as their messages are.
	for roomID, list := range rs {
		kept := list[:0:0]
		for _, r := range list {
			if !req.ignored[r.User] {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			delete(rs, roomID)
		} else {
			rs[roomID] = kept
		}
	}
	return rs, nil
}

// typingSerial returns the current typing serial for next_batch.
func (s *Service) typingSerial() int64 { return s.typing.Serial() }

// typingSince returns the typing serial the request's token covers. A token
// from the future (issued before a restart, by a tracker whose serial was
// ahead) counts as covering nothing, so the current lists are sent again.
func (s *Service) typingSince(req Request) int64 {
	if req.Since == nil || req.Since.Typing > s.typing.Serial() {
		return 0
	}
	return req.Since.Typing
}

// hasRoomEphemeral reports whether the room has ephemeral events (typing,
// receipts) newer than the request's token.
func (s *Service) hasRoomEphemeral(roomID id.RoomID, req Request, since int64) bool {
	if len(req.receipts[roomID]) > 0 {
		return true
	}
	ef := &req.Filter.Room.Ephemeral
	if !ef.MatchRoom(roomID) || !ef.Match("m.typing", "") {
		return false
	}
	_, serial := s.typing.Room(roomID)
	return serial > s.typingSince(req) && serial <= req.typingUpto
}

// roomEphemeral returns the room's ephemeral events for the response: its
// typing list when it changed after the token (or, in an initial sync, when
// anyone is typing), and one m.receipt event with the receipts build loaded
// into req.
func (s *Service) roomEphemeral(ctx context.Context, req Request, roomID id.RoomID, since, now int64) []json.RawMessage {
	out := []json.RawMessage{}
	ef := &req.Filter.Room.Ephemeral
	if !ef.MatchRoom(roomID) {
		return out
	}
	if ef.Match("m.typing", "") {
		users, serial := s.typing.Room(roomID)
		// A change after next_batch's serial waits for the next sync.
		if serial > req.typingUpto {
			users, serial = nil, 0
		}
		if (req.Since == nil && len(users) > 0) || (req.Since != nil && serial > s.typingSince(req)) {
			// An ignored user's typing is not shown.
			out = append(out, typingEvent(withoutIgnoredUsers(req.ignored, users)))
		}
	}
	if rs := req.receipts[roomID]; len(rs) > 0 {
		out = append(out, receipts.Event(rs))
	}
	return out
}

// typingEvent renders an m.typing event: {"type":"m.typing","content":{"user_ids":[...]}}.
func typingEvent(users []id.UserID) json.RawMessage {
	if users == nil {
		users = []id.UserID{}
	}
	raw, _ := json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
	return raw
}
