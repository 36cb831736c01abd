package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
)

type stateEventReq struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

type createRoomReq struct {
	Visibility                string                     `json:"visibility"`
	RoomAliasName             string                     `json:"room_alias_name"`
	Name                      *string                    `json:"name"`
	Topic                     *string                    `json:"topic"`
	Invite                    []id.UserID                `json:"invite"`
	RoomVersion               id.RoomVersion             `json:"room_version"`
	CreationContent           map[string]json.RawMessage `json:"creation_content"`
	InitialState              []stateEventReq            `json:"initial_state"`
	Preset                    string                     `json:"preset"`
	IsDirect                  bool                       `json:"is_direct"`
	PowerLevelContentOverride map[string]json.RawMessage `json:"power_level_content_override"`
}

// createRoom serves POST /_matrix/client/v3/createRoom (create_room.yaml).
// The initial events follow the order the spec gives: create, the creator's
// join, power levels, canonical alias, preset events, initial_state, name,
// topic, then invites.
func (a *API) createRoom(w http.ResponseWriter, r *http.Request) error {
	var req createRoomReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	roomID, err := a.createRoomAs(r.Context(), session(r).UserID, req)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"room_id": roomID})
}

// createRoomAs creates a room for creator as createRoom describes; the
// handler and auto-join rooms share it.
func (a *API) createRoomAs(ctx context.Context, creator id.UserID, req createRoomReq) (id.RoomID, error) {
	version := req.RoomVersion
	if version == "" {
		version = id.RoomVersion(a.cfg.DefaultRoomVersion)
	}
	if !pdu.IsSupported(version) {
		return "", mxerr.UnsupportedRoomVer.With("room version %q is not supported", version)
	}
	preset := req.Preset
	if preset == "" {
		preset = "private_chat"
		if req.Visibility == "public" {
			preset = "public_chat"
		}
	}
	if preset != "private_chat" && preset != "public_chat" && preset != "trusted_private_chat" {
		return "", mxerr.BadJSON.With("unknown preset %q", preset)
	}
	for _, inv := range req.Invite {
		if _, _, err := inv.ParseAndValidateRelaxed(); err != nil {
			return "", mxerr.BadJSON.With("invalid user ID %q in invite", inv)
		}
		if !a.users.IsLocal(inv) && a.handshake == nil {
			return "", mxerr.Forbidden.With("inviting users of other servers needs federation, which is not enabled")
		}
	}
	var alias id.RoomAlias
	if req.RoomAliasName != "" {
		if strings.ContainsAny(req.RoomAliasName, ":# \t\n") {
			return "", mxerr.InvalidParam.With("room_alias_name may not contain ':', '#' or whitespace").WithStatus(400)
		}
		alias = id.NewRoomAlias(req.RoomAliasName, a.cfg.ServerName)
		if _, _, err := a.rooms.ResolveAlias(ctx, alias); err == nil {
			return "", mxerr.RoomInUse.With("room alias %s already exists", alias)
		}
	}

	state := func(typ, key string, content any) pdu.Proto {
		raw, _ := json.Marshal(content)
		k := key
		return pdu.Proto{Type: typ, StateKey: &k, Sender: creator, Content: raw}
	}

	for _, ev := range req.InitialState {
		if ev.Type == "m.room.create" {
			// The create event comes from room_version and
			// creation_content; a second one could only fail the auth
			// rules.
			return "", mxerr.BadJSON.With("initial_state may not contain m.room.create; use creation_content")
		}
	}
	var additional []id.UserID
	if version.PrivilegedRoomCreators() {
		var err error
		if additional, err = additionalCreators(creator, preset, req); err != nil {
			return "", err
		}
	}

	create := map[string]any{"room_version": version}
	if version.CreatorInContent() {
		// v11 dropped the creator field; older versions need it.
		create["creator"] = creator
	}
	for k, v := range req.CreationContent {
		if k == "room_version" || (k == "creator" && version.CreatorInContent()) {
			continue
		}
		create[k] = v
	}
	if len(additional) > 0 {
		create["additional_creators"] = additional
	}
	protos := []pdu.Proto{state("m.room.create", "", create)}

	joinContent := a.memberContent(ctx, creator, "join")
	if req.IsDirect {
		joinContent["is_direct"] = true
	}
	protos = append(protos, state("m.room.member", creator.String(), joinContent))

	pl := map[string]any{
		"users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0,
		"events": map[string]int{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
			"m.room.server_acl": 100, "m.room.encryption": 100,
		},
		"notifications": map[string]int{"room": 50},
	}
	users := map[string]int{}
	if version.PrivilegedRoomCreators() {
		// Creators outrank every level, so a tombstone (which ends the
		// room) needs more than state_default's admins have, as the spec
		// asks of v12 rooms; Synapse picks 150.
		pl["events"].(map[string]int)["m.room.tombstone"] = 150
	} else {
		users[creator.String()] = 100
		if preset == "trusted_private_chat" {
			// In v12 the invitees are additional creators instead.
			for _, inv := range req.Invite {
				users[inv.String()] = 100
			}
		}
	}
	pl["users"] = users
	for k, v := range req.PowerLevelContentOverride {
		pl[k] = v
	}
	protos = append(protos, state("m.room.power_levels", "", pl))

	if alias != "" {
		protos = append(protos, state("m.room.canonical_alias", "", map[string]any{"alias": alias}))
	}
	joinRule, guest := "invite", "can_join"
	if preset == "public_chat" {
		joinRule, guest = "public", "forbidden"
	}
	protos = append(protos,
		state("m.room.join_rules", "", map[string]string{"join_rule": joinRule}),
		state("m.room.history_visibility", "", map[string]string{"history_visibility": "shared"}),
		state("m.room.guest_access", "", map[string]string{"guest_access": guest}),
	)
	for _, ev := range req.InitialState {
		if ev.Type == "" {
			return "", mxerr.BadJSON.With("initial_state events need a type")
		}
		if ev.Type == "m.room.create" || ev.Type == "m.room.member" {
			continue
		}
		k := ev.StateKey
		content := ev.Content
		if len(content) == 0 {
			content = json.RawMessage("{}")
		}
		protos = append(protos, pdu.Proto{Type: ev.Type, StateKey: &k, Sender: creator, Content: content})
	}
	if req.Name != nil {
		protos = append(protos, state("m.room.name", "", map[string]string{"name": *req.Name}))
	}
	if req.Topic != nil {
		// Spec v1.15 adds the m.topic block; its m.text mimetype defaults
		// to text/plain, which the plain topic is.
		protos = append(protos, state("m.room.topic", "", map[string]any{
			"topic": *req.Topic, "m.topic": map[string]any{"m.text": []map[string]string{{"body": *req.Topic}}},
		}))
	}
	var remoteInvites []id.UserID
	for _, inv := range req.Invite {
		if !a.users.IsLocal(inv) {
			// Invites to other servers need their countersignature, so
			// they follow once the room exists.
			remoteInvites = append(remoteInvites, inv)
			continue
		}
		// As the spec allows, the room is made without the invite of a
		// user who blocks invites.
		if blocked, err := a.accountData.InvitesBlocked(ctx, inv); err != nil {
			return "", err
		} else if blocked {
			continue
		}
		c := a.memberContent(ctx, inv, "invite")
		if req.IsDirect {
			c["is_direct"] = true
		}
		protos = append(protos, state("m.room.member", inv.String(), c))
	}

	roomID, _, err := a.rooms.Create(ctx, version, protos)
	if err != nil {
		return "", err
	}
	for _, inv := range remoteInvites {
		c := a.memberContent(ctx, inv, "invite")
		if req.IsDirect {
			c["is_direct"] = true
		}
		raw, _ := json.Marshal(c)
		if _, err := a.handshake.Invite(ctx, roomID, creator, inv, raw); err != nil {
			// The room exists now; as Synapse does, a failed invite is
			// logged rather than undoing the room.
			a.log.Warn("inviting a remote user to a new room failed", "room_id", roomID, "user_id", inv, "err", err)
		}
	}
	if alias != "" {
		if err := a.rooms.SetAlias(ctx, alias, roomID, creator); err != nil {
			return "", err
		}
	}
	if req.Visibility == "public" {
		if err := a.rooms.SetVisibility(ctx, roomID, true); err != nil {
			return "", err
		}
	}
	return roomID, nil
}

// additionalCreators checks the creators of a room of a version with
// privileged creators (v12) before anything is built, so bad input is 400
// rather than an auth rule's 403: creation_content.additional_creators
// must be an array of valid user IDs, and no creator may be given a power
// level (creators have no level; the auth rules reject one). With the
// trusted_private_chat preset the invitees become additional creators,
// as the spec suggests and Synapse does, since v12 power levels cannot
// make them equal to the creator.
func additionalCreators(creator id.UserID, preset string, req createRoomReq) ([]id.UserID, error) {
	var out []id.UserID
	if raw, ok := req.CreationContent["additional_creators"]; ok {
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, mxerr.BadJSON.With("creation_content.additional_creators must be an array of user IDs")
		}
		for _, u := range list {
			if _, _, err := id.UserID(u).ParseAndValidateRelaxed(); err != nil {
				return nil, mxerr.BadJSON.With("creation_content.additional_creators: %q is not a valid user ID", u)
			}
			out = append(out, id.UserID(u))
		}
	}
	if preset == "trusted_private_chat" {
		for _, inv := range req.Invite {
			if inv != creator && !slices.Contains(out, inv) {
				out = append(out, inv)
			}
		}
	}
	creators := append([]id.UserID{creator}, out...)
	check := func(where string, users json.RawMessage) error {
		if users == nil {
			return nil
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(users, &m); err != nil {
			return mxerr.BadJSON.With("%s.users must be an object", where)
		}
		for _, c := range creators {
			if _, ok := m[c.String()]; ok {
				return mxerr.InvalidParam.With("%s.users may not name %s: room creators have no power level", where, c)
			}
		}
		return nil
	}
	if err := check("power_level_content_override", req.PowerLevelContentOverride["users"]); err != nil {
		return nil, err
	}
	for _, ev := range req.InitialState {
		if ev.Type == "m.room.power_levels" && ev.StateKey == "" {
			var c map[string]json.RawMessage
			if err := json.Unmarshal(ev.Content, &c); err == nil {
				if err := check("initial_state power levels", c["users"]); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}
