package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
)

// sendMembership sends an m.room.member event from sender about target.
// Join events carry the target's current profile.
func (a *API) sendMembership(ctx context.Context, sender id.UserID, roomID id.RoomID, target id.UserID, membership, reason string, extra map[string]any) (*room.Stored, error) {
	content := a.memberContent(ctx, target, membership)
	for k, v := range extra {
		content[k] = v
	}
	content["membership"] = membership
	if reason != "" {
		content["reason"] = reason
	}
	raw, _ := json.Marshal(content)
	sk := target.String()
	return a.rooms.Send(ctx, pdu.Proto{Type: "m.room.member", StateKey: &sk, Sender: sender, Content: raw, RoomID: roomID}, nil)
}

// memberContent is the content of a membership event for target; joins and
// invites of local users carry their current profile.
func (a *API) memberContent(ctx context.Context, target id.UserID, membership string) map[string]any {
	content := map[string]any{"membership": membership}
	if (membership == "join" || membership == "invite") && a.users.IsLocal(target) {
		if acct, err := a.users.Get(ctx, target); err == nil {
			if acct.DisplayName != "" {
				content["displayname"] = acct.DisplayName
			}
			if acct.AvatarURL != "" {
				content["avatar_url"] = acct.AvatarURL
			}
		}
	}
	return content
}

type membershipReq struct {
	UserID id.UserID `json:"user_id"`
	Reason string    `json:"reason"`
}

// resolveRoom turns a room ID or an alias into a room ID, with servers
// that may be asked to join it: the via or server_name parameters, the
// alias's servers, and the room ID's own server (before v12 room IDs name
// one).
func (a *API) resolveRoom(ctx context.Context, idOrAlias string, via []string) (id.RoomID, []string, error) {
	switch {
	case strings.HasPrefix(idOrAlias, "!"):
		roomID := id.RoomID(idOrAlias)
		if _, server, ok := strings.Cut(idOrAlias, ":"); ok {
			if !id.ValidateServerName(server) {
				return "", nil, mxerr.InvalidParam.With("%q is not a valid room ID", idOrAlias)
			}
			via = append(via, server)
		}
		return roomID, via, nil
	case strings.HasPrefix(idOrAlias, "#"):
		alias := id.RoomAlias(idOrAlias)
		_, server, _ := strings.Cut(idOrAlias, ":")
		if !id.ValidateServerName(server) {
			return "", nil, mxerr.InvalidParam.With("%q is not a valid room alias", idOrAlias)
		}
		if server == a.cfg.ServerName || a.handshake == nil {
			roomID, _, err := a.rooms.ResolveAlias(ctx, alias)
			return roomID, via, err
		}
		roomID, servers, err := a.handshake.ResolveAlias(ctx, alias, server)
		if err != nil {
			return "", nil, err
		}
		return roomID, append(append(via, servers...), server), nil
	}
	return "", nil, mxerr.InvalidParam.With("%q is neither a room ID nor an alias", idOrAlias)
}

// viaServers reads the via (and older server_name) query parameters,
// leaving out values that are not server names: no request could reach
// them.
func viaServers(r *http.Request) []string {
	q := r.URL.Query()
	var via []string
	for _, s := range append(q["via"], q["server_name"]...) {
		if id.ValidateServerName(s) {
			via = append(via, s)
		}
	}
	return via
}

func (a *API) join(w http.ResponseWriter, r *http.Request, roomID id.RoomID, via []string) error {
	var body map[string]json.RawMessage
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	if reason, ok := body["reason"]; ok {
		var s string
		if err := json.Unmarshal(reason, &s); err != nil {
			return mxerr.BadJSON.With("reason must be a string")
		}
	}
	// The body's keys become the member event's content (the spec names
	// reason; clients add their own, as Synapse keeps them), except
	// third_party_signed, which is a proof for the join, not content.
	extra := map[string]any{}
	for k, v := range body {
		if k != "third_party_signed" {
			extra[k] = v
		}
	}
	if session(r).IsGuest {
		if err := a.guestMayJoin(r.Context(), roomID); err != nil {
			return err
		}
	}
	if err := a.joinAs(r.Context(), session(r).UserID, roomID, via, extra); err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"room_id": roomID})
}

// guestMayJoin: guests join only rooms this server is in whose
// m.room.guest_access is can_join (guest_access.md); of a room elsewhere
// the server cannot tell before joining, so guests stay out, as in
// Synapse.
func (a *API) guestMayJoin(ctx context.Context, roomID id.RoomID) error {
	refused := mxerr.Forbidden.With("guest access is not allowed in this room")
	here, err := a.rooms.ServerInRoom(ctx, roomID, a.cfg.ServerName)
	if err != nil {
		return err
	}
	if !here {
		return refused
	}
	ev, err := a.rooms.CurrentStateEvent(ctx, roomID, "m.room.guest_access", "")
	if err != nil {
		return err
	}
	var c struct {
		GuestAccess string `json:"guest_access"`
	}
	if ev == nil || json.Unmarshal(ev.Content, &c) != nil || c.GuestAccess != "can_join" {
		return refused
	}
	return nil
}

// joinAs joins user to roomID: through a resident server (via, or the
// inviter's) when no user of ours is in the room, else locally. The join
// endpoints and auto-join rooms share it. extra is added to the member
// event's content, over the user's profile; membership stays join.
func (a *API) joinAs(ctx context.Context, user id.UserID, roomID id.RoomID, via []string, extra map[string]any) error {
	here, err := a.rooms.ServerInRoom(ctx, roomID, a.cfg.ServerName)
	if err != nil {
		return err
	}
	if !here && a.handshake != nil {
		// No user of ours is in the room, so our copy (if any) is stale:
		// join through a server that is in it.
		if inv, err := a.rooms.RemoteInviteFor(ctx, user, roomID); err == nil && inv != nil {
			via = append([]string{inv.Event.Sender.Homeserver()}, via...)
		}
		content := a.memberContent(ctx, user, "join")
		for k, v := range extra {
			content[k] = v
		}
		content["membership"] = "join"
		_, err := a.handshake.Join(ctx, roomID, user, via, content)
		if err == nil {
			return nil
		}
		if exists, _ := a.rooms.Exists(ctx, roomID); !exists || !errors.Is(err, mxerr.NotFound) {
			return err
		}
	}
	exists, err := a.rooms.Exists(ctx, roomID)
	if err != nil {
		return err
	}
	if !exists {
		return mxerr.NotFound.With("room %s is unknown to this server", roomID)
	}
	if m, err := a.rooms.Membership(ctx, roomID, user); err != nil || m == "join" {
		return err
	}
	_, err = a.sendMembership(ctx, user, roomID, user, "join", "", extra)
	return err
}

// joinRoom serves POST /_matrix/client/v3/join/{roomIdOrAlias} (joining.yaml).
func (a *API) joinRoom(w http.ResponseWriter, r *http.Request) error {
	roomID, via, err := a.resolveRoom(r.Context(), r.PathValue("roomIdOrAlias"), viaServers(r))
	if err != nil {
		return err
	}
	return a.join(w, r, roomID, via)
}

// joinRoomById serves POST /_matrix/client/v3/rooms/{roomId}/join (joining.yaml).
func (a *API) joinRoomById(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	_, via, _ := a.resolveRoom(r.Context(), roomID.String(), nil)
	return a.join(w, r, roomID, via)
}

// membershipChange handles the endpoints where the sender changes another
// user's membership: invite, kick, ban and unban.
func (a *API) membershipChange(w http.ResponseWriter, r *http.Request, membership string) error {
	sess := session(r)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var body membershipReq
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	if _, _, err := body.UserID.Parse(); err != nil || body.UserID == "" {
		return mxerr.BadJSON.With("user_id must be a valid user ID")
	}
	if _, err := a.rooms.Version(r.Context(), roomID); err != nil {
		return err
	}
	if membership == "invite" && !a.users.IsLocal(body.UserID) {
		if a.handshake == nil {
			return mxerr.Forbidden.With("inviting users of other servers needs federation, which is not enabled")
		}
		if current, err := a.rooms.Membership(r.Context(), roomID, body.UserID); err != nil {
			return err
		} else if current == "join" || current == "invite" || current == "ban" {
			return mxerr.Forbidden.With("the user's membership is %s", current)
		}
		content := a.memberContent(r.Context(), body.UserID, "invite")
		if body.Reason != "" {
			content["reason"] = body.Reason
		}
		raw, _ := json.Marshal(content)
		if _, err := a.handshake.Invite(r.Context(), roomID, sess.UserID, body.UserID, raw); err != nil {
			return err
		}
		return httpx.OK(w, httpx.Empty)
	}
	if membership == "invite" {
		if _, err := a.users.Get(r.Context(), body.UserID); err != nil {
			if errors.Is(err, mxerr.NotFound) {
				return mxerr.NotFound.With("user %s does not exist", body.UserID)
			}
			return err
		}
		if err := a.accountData.CheckInvite(r.Context(), body.UserID); err != nil {
			return err
		}
	}
	current, err := a.rooms.Membership(r.Context(), roomID, body.UserID)
	if err != nil {
		return err
	}
	switch membership {
	case "kick":
		if current != "join" && current != "invite" && current != "knock" {
			return mxerr.Forbidden.With("the user is not in the room")
		}
		membership = "leave"
	case "unban":
		if current != "ban" {
			return mxerr.Forbidden.With("the user is not banned")
		}
		membership = "leave"
	case "invite":
		if current == "join" {
			return mxerr.Forbidden.With("the user is already in the room")
		}
		if current == "invite" {
			return httpx.OK(w, httpx.Empty)
		}
	}
	if _, err := a.sendMembership(r.Context(), sess.UserID, roomID, body.UserID, membership, body.Reason, nil); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// inviteUser serves POST /_matrix/client/v3/rooms/{roomId}/invite (inviting.yaml).
func (a *API) inviteUser(w http.ResponseWriter, r *http.Request) error {
	return a.membershipChange(w, r, "invite")
}

// kick serves POST /_matrix/client/v3/rooms/{roomId}/kick (kicking.yaml).
func (a *API) kick(w http.ResponseWriter, r *http.Request) error {
	return a.membershipChange(w, r, "kick")
}

// ban serves POST /_matrix/client/v3/rooms/{roomId}/ban (banning.yaml).
func (a *API) ban(w http.ResponseWriter, r *http.Request) error {
	return a.membershipChange(w, r, "ban")
}

// unban serves POST /_matrix/client/v3/rooms/{roomId}/unban (banning.yaml).
func (a *API) unban(w http.ResponseWriter, r *http.Request) error {
	return a.membershipChange(w, r, "unban")
}

// leaveRoom serves POST /_matrix/client/v3/rooms/{roomId}/leave (leaving.yaml).
func (a *API) leaveRoom(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	if a.handshake != nil {
		if inv, err := a.rooms.RemoteInviteFor(r.Context(), sess.UserID, roomID); err != nil {
			return err
		} else if inv != nil {
			if here, err := a.rooms.ServerInRoom(r.Context(), roomID, a.cfg.ServerName); err == nil && !here {
				if err := a.handshake.RejectInvite(r.Context(), sess.UserID, roomID); err != nil {
					return err
				}
				return httpx.OK(w, httpx.Empty)
			}
		}
	}
	m, err := a.rooms.Membership(r.Context(), roomID, sess.UserID)
	if err != nil {
		return err
	}
	switch m {
	case "leave", "ban":
		return httpx.OK(w, httpx.Empty)
	case "":
		return mxerr.NotFound.With("you are not in room %s", roomID)
	}
	if _, err := a.sendMembership(r.Context(), sess.UserID, roomID, sess.UserID, "leave", body.Reason, nil); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// forgetRoom serves POST /_matrix/client/v3/rooms/{roomId}/forget (leaving.yaml).
func (a *API) forgetRoom(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	if err := a.rooms.Forget(r.Context(), session(r).UserID, roomID); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// knockRoom serves POST /_matrix/client/v3/knock/{roomIdOrAlias} (knocking.yaml).
func (a *API) knockRoom(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	sess := session(r)
	roomID, via, err := a.resolveRoom(ctx, r.PathValue("roomIdOrAlias"), viaServers(r))
	if err != nil {
		return err
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	here, err := a.rooms.ServerInRoom(ctx, roomID, a.cfg.ServerName)
	if err != nil {
		return err
	}
	if !here && a.handshake != nil {
		content := map[string]any{}
		if body.Reason != "" {
			content["reason"] = body.Reason
		}
		if err := a.handshake.Knock(ctx, roomID, sess.UserID, via, content); err != nil {
			return err
		}
		return httpx.OK(w, map[string]any{"room_id": roomID})
	}
	if _, err := a.rooms.Version(ctx, roomID); err != nil {
		return err
	}
	if _, err := a.sendMembership(ctx, sess.UserID, roomID, sess.UserID, "knock", body.Reason, nil); err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"room_id": roomID})
}

// setMemberState sends the m.room.member event of PUT
// /rooms/{roomId}/state/m.room.member/{userId} (room_state.yaml), which
// the spec allows as any state event: the content's membership takes the
// path its endpoint would (joins and knocks through another server when
// none of our users is in the room, invites of remote users through their
// server), and the auth rules decide the rest, so a joined user may change
// their room display name or avatar, and a moderator may invite, kick or
// ban. As in Synapse, the target's profile fills displayname and
// avatar_url of a join, invite or knock that leaves them out.
func (a *API) setMemberState(ctx context.Context, sender id.UserID, roomID id.RoomID, stateKey string, content map[string]json.RawMessage) (id.EventID, error) {
	target := id.UserID(stateKey)
	if _, _, err := target.Parse(); err != nil || !strings.HasPrefix(stateKey, "@") {
		return "", mxerr.BadJSON.With("the state key of m.room.member must be a user ID")
	}
	var membership string
	if err := json.Unmarshal(content["membership"], &membership); err != nil || membership == "" {
		return "", mxerr.BadJSON.With("membership must be a string")
	}
	extra := make(map[string]any, len(content))
	for k, v := range content {
		extra[k] = v
	}
	self := target == sender
	here, err := a.rooms.ServerInRoom(ctx, roomID, a.cfg.ServerName)
	if err != nil {
		return "", err
	}
	// A path has no via parameter: a room ID before v12 names a server.
	_, via, _ := a.resolveRoom(ctx, roomID.String(), nil)
	switch {
	case membership == "join" && self:
		m := "" // a room none of our users is in is unknown, or stale
		if here {
			if m, err = a.rooms.Membership(ctx, roomID, sender); err != nil {
				return "", err
			}
		}
		if m != "join" {
			if err := a.joinAs(ctx, sender, roomID, via, extra); err != nil {
				return "", err
			}
			return a.currentMemberEvent(ctx, roomID, sender)
		}
		// Joined already: a profile change, sent below.
	case membership == "knock" && self && !here && a.handshake != nil:
		if err := a.handshake.Knock(ctx, roomID, sender, via, extra); err != nil {
			return "", err
		}
		return a.localMembershipEvent(ctx, sender, roomID)
	case membership == "leave" && self && !here && a.handshake != nil:
		if inv, err := a.rooms.RemoteInviteFor(ctx, sender, roomID); err != nil {
			return "", err
		} else if inv != nil {
			if err := a.handshake.RejectInvite(ctx, sender, roomID); err != nil {
				return "", err
			}
			return a.localMembershipEvent(ctx, sender, roomID)
		}
	case membership == "invite" && !a.users.IsLocal(target):
		if a.handshake == nil {
			return "", mxerr.Forbidden.With("inviting users of other servers needs federation, which is not enabled")
		}
		c := a.memberContent(ctx, target, "invite")
		for k, v := range extra {
			c[k] = v
		}
		raw, _ := json.Marshal(c)
		st, err := a.handshake.Invite(ctx, roomID, sender, target, raw)
		if err != nil {
			return "", err
		}
		return st.ID, nil
	case membership == "invite":
		if _, err := a.users.Get(ctx, target); err != nil {
			if errors.Is(err, mxerr.NotFound) {
				return "", mxerr.NotFound.With("user %s does not exist", target)
			}
			return "", err
		}
		if err := a.accountData.CheckInvite(ctx, target); err != nil {
			return "", err
		}
	}
	st, err := a.sendMembership(ctx, sender, roomID, target, membership, "", extra)
	if err != nil {
		return "", err
	}
	return st.ID, nil
}

// currentMemberEvent returns the ID of user's member event in the room's
// current state.
func (a *API) currentMemberEvent(ctx context.Context, roomID id.RoomID, user id.UserID) (id.EventID, error) {
	ev, err := a.rooms.CurrentStateEvent(ctx, roomID, "m.room.member", user.String())
	if err != nil {
		return "", err
	}
	if ev == nil {
		return "", fmt.Errorf("member event of %s in %s missing after the change", user, roomID)
	}
	return ev.ID, nil
}

// localMembershipEvent returns the event of user's membership in a room
// this server is not in (a knock, or the rejection of an invite).
func (a *API) localMembershipEvent(ctx context.Context, user id.UserID, roomID id.RoomID) (id.EventID, error) {
	ms, err := a.rooms.LocalMemberships(ctx, user, 0)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.RoomID == roomID {
			return m.EventID, nil
		}
	}
	return "", fmt.Errorf("membership of %s in %s missing after the change", user, roomID)
}
