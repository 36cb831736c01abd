package spaces

import (
	"context"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// RoomSummary is the answer of GET /_matrix/client/v1/room_summary: the
// room's summary and, for an authenticated caller, their membership.
type RoomSummary struct {
	Summary
	Membership string `json:"membership,omitempty"`
}

// Summarize returns the summary of a room for user ("" when the caller is
// unauthenticated), under the hierarchy's visibility rules: from local
// state when this server is in the room, else from the first of via that
// answers the federation hierarchy endpoint (MSC3266). Rooms the caller may
// not see are 404, like unknown ones, so that their existence is not told.
func (s *Service) Summarize(ctx context.Context, roomID id.RoomID, user id.UserID, via []string) (RoomSummary, error) {
	notFound := mxerr.NotFound.With("room not found or not accessible")
	in, err := s.inRoom(ctx, roomID)
	if err != nil {
		return RoomSummary{}, err
	}
	var out RoomSummary
	if in {
		l, err := s.loadLocal(ctx, roomID)
		if err != nil {
			return RoomSummary{}, err
		}
		ok, err := s.userMaySee(ctx, l, user)
		if err != nil {
			return RoomSummary{}, err
		}
		if !ok {
			return RoomSummary{}, notFound
		}
		out.Summary = l.Summary
	} else {
		res := s.fetchRemote(ctx, roomID, via, false)
		if res == nil {
			return RoomSummary{}, notFound
		}
		ok, err := s.remoteMaySee(ctx, res.room.Summary, user)
		if err != nil {
			return RoomSummary{}, err
		}
		if !ok {
			return RoomSummary{}, notFound
		}
		out.Summary = res.room.Summary
	}
	if user != "" {
		// As Synapse: the caller's membership, "leave" when they have none.
		out.Membership = "leave"
		m, _, ok, err := s.rooms.LocalMembership(ctx, user, roomID)
		if err != nil {
			return RoomSummary{}, err
		}
		if ok {
			out.Membership = m.Membership
		} else if inv, err := s.rooms.RemoteInviteFor(ctx, user, roomID); err == nil && inv != nil {
			out.Membership = "invite"
		}
	}
	return out, nil
}
