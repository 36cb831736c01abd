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
	var req sendInviteV2Req
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	signed, err := a.sendInvite(r, req)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]json.RawMessage{"event": signed})
}

// sendInviteV1 handles PUT /_matrix/federation/v1/invite/{roomId}/{eventId}
// (invites-v1.yaml): the body is the invite event itself, with the
// stripped state in unsigned.invite_room_state, and the room is of
// version 1 or 2. The answer is [200, {"event": ...}].
func (a *API) sendInviteV1(w http.ResponseWriter, r *http.Request) error {
	raw, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var ev struct {
		Unsigned struct {
			InviteRoomState json.RawMessage `json:"invite_room_state"`
		} `json:"unsigned"`
	}
	if err := httpx.Unmarshal(raw, &ev); err != nil {
		return err
	}
	req := sendInviteV2Req{RoomVersion: "1", Event: raw, InviteRoomState: ev.Unsigned.InviteRoomState}
	if roomID, err := pathRoomID(r); err == nil {
		// The spec says to assume 1 or 2; a room we know says which.
		if v, err := a.rooms.Version(r.Context(), roomID); err == nil {
			req.RoomVersion = v
		}
	}
	if req.RoomVersion != "1" && req.RoomVersion != "2" {
		return mxerr.IncompatibleRoomVer.With("invite v1 is only for rooms of versions 1 and 2; this one is of version %s", req.RoomVersion).
			WithField("room_version", string(req.RoomVersion))
	}
	signed, err := a.sendInvite(r, req)
	if err != nil {
		return err
	}
	return httpx.OK(w, []any{200, map[string]json.RawMessage{"event": signed}})
}

// sendInvite checks and countersigns an invite of v1 or v2.
func (a *API) sendInvite(r *http.Request, req sendInviteV2Req) (json.RawMessage, error) {
	ctx := r.Context()
	origin := Origin(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	// A server the room's ACL denies may not invite into it (checked
	// first: its requests get nothing else of the room either).
	if err := a.checkACL(ctx, roomID, origin); err != nil {
		return nil, err
	}
	if !pdu.IsSupported(req.RoomVersion) {
		return nil, mxerr.IncompatibleRoomVer.With("room version %q is not supported", req.RoomVersion).
			WithField("room_version", string(req.RoomVersion))
	}
	ev, err := a.checker.Check(ctx, req.RoomVersion, req.Event)
	if err != nil {
		return nil, mxerr.BadJSON.With("invalid invite event: %v", err)
	}
	switch {
	case ev.ID.String() != r.PathValue("eventId"):
		return nil, mxerr.BadJSON.With("the event ID is %s, not %s", ev.ID, r.PathValue("eventId"))
	case ev.RoomID() != roomID:
		return nil, mxerr.BadJSON.With("the event is for another room")
	case ev.Type != "m.room.member" || ev.StateKey == nil || ev.Membership() != "invite":
		return nil, mxerr.BadJSON.With("not an invite")
	case ev.Sender.Homeserver() != origin:
		return nil, mxerr.Forbidden.With("the sender does not belong to server %s", origin)
	}
	target := id.UserID(*ev.StateKey)
	if target.Homeserver() != a.serverName {
		return nil, mxerr.BadJSON.With("the invitee is not a user of this server")
	}
	if acct, err := a.users.Get(ctx, target); err != nil {
		return nil, mxerr.NotFound.With("unknown user")
	} else if acct.Deactivated {
		return nil, mxerr.Forbidden.With("the user is deactivated")
	}
	if a.invites != nil {
		if err := a.invites.CheckInvite(ctx, target); err != nil {
			return nil, err
		}
	}
	if v, err := a.rooms.Version(ctx, roomID); err == nil && v != req.RoomVersion {
		return nil, mxerr.BadJSON.With("the room is of version %s", v)
	}
	signed, err := a.rooms.Countersign(ev)
	if err != nil {
		return nil, err
	}
	if in, err := a.rooms.ServerInRoom(ctx, roomID, a.serverName); err != nil || !in {
		if err := a.rooms.StoreRemoteInvite(ctx, signed, req.InviteRoomState); err != nil {
			return nil, err
		}
	}
	return signed.JSON(), nil
}
