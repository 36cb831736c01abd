package federationapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
)

// sendInviteV2Req is the body of PUT /v2/invite.
type sendInviteV2Req struct {
	RoomVersion     id.RoomVersion  `json:"room_version"`
	Event           json.RawMessage `json:"event"`
	InviteRoomState json.RawMessage `json:"invite_room_state"`
}

// sendInviteV2 handles PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
// (invites-v2.yaml): a server invites one of our users. We countersign the
// invite; when we are not in the room yet, the invite and its stripped
// state are kept for the user's clients.
func (a *API) sendInviteV2(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	origin := Origin(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var req sendInviteV2Req
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if !pdu.IsSupported(req.RoomVersion) {
		return mxerr.IncompatibleRoomVer.With("room version %q is not supported", req.RoomVersion).
			WithField("room_version", string(req.RoomVersion))
	}
	ev, err := a.checker.Check(ctx, req.RoomVersion, req.Event)
	if err != nil {
		return mxerr.BadJSON.With("invalid invite event: %v", err)
	}
	switch {
	case ev.ID.String() != r.PathValue("eventId"):
		return mxerr.BadJSON.With("the event ID is %s, not %s", ev.ID, r.PathValue("eventId"))
	case ev.RoomID() != roomID:
		return mxerr.BadJSON.With("the event is for another room")
	case ev.Type != "m.room.member" || ev.StateKey == nil || ev.Membership() != "invite":
		return mxerr.BadJSON.With("not an invite")
	case ev.Sender.Homeserver() != origin:
		return mxerr.Forbidden.With("the sender does not belong to server %s", origin)
	}
	target := id.UserID(*ev.StateKey)
	if target.Homeserver() != a.serverName {
		return mxerr.BadJSON.With("the invitee is not a user of this server")
	}
	if acct, err := a.users.Get(ctx, target); err != nil {
		return mxerr.NotFound.With("unknown user")
	} else if acct.Deactivated {
		return mxerr.Forbidden.With("the user is deactivated")
	}
	if v, err := a.rooms.Version(ctx, roomID); err == nil && v != req.RoomVersion {
		return mxerr.BadJSON.With("the room is of version %s", v)
	}
	if err := a.checkACL(ctx, roomID, origin); err != nil {
		return err
	}
	signed, err := a.rooms.Countersign(ev)
	if err != nil {
		return err
	}
	if in, err := a.rooms.ServerInRoom(ctx, roomID, a.serverName); err != nil || !in {
		if err := a.rooms.StoreRemoteInvite(ctx, signed, req.InviteRoomState); err != nil {
			return err
		}
	}
	return httpx.OK(w, map[string]json.RawMessage{"event": signed.JSON()})
}
