package clientapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

func (a *API) pathAlias(r *http.Request) (id.RoomAlias, error) {
	alias := id.RoomAlias(r.PathValue("roomAlias"))
	server, ok := aliasServer(alias)
	if !ok {
		return "", mxerr.InvalidParam.With("invalid room alias %q", alias)
	}
	if server != a.cfg.ServerName {
		return alias, mxerr.NotFound.With("alias %s is not local; federated alias lookup is not enabled", alias)
	}
	return alias, nil
}

// getRoomIdByAlias serves GET /_matrix/client/v3/directory/room/{roomAlias} (directory.yaml).
// An alias of another server is asked of that server (query/directory).
func (a *API) getRoomIdByAlias(w http.ResponseWriter, r *http.Request) error {
	alias, err := a.pathAlias(r)
	if server, ok := aliasServer(alias); ok && server != a.cfg.ServerName && a.handshake != nil {
		roomID, servers, err := a.handshake.ResolveAlias(r.Context(), alias, server)
		if err != nil {
			return err
		}
		return httpx.OK(w, map[string]any{"room_id": roomID, "servers": servers})
	}
	if err != nil {
		return err
	}
	roomID, _, err := a.rooms.ResolveAlias(r.Context(), alias)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"room_id": roomID, "servers": []string{a.cfg.ServerName}})
}

// setRoomAlias serves PUT /_matrix/client/v3/directory/room/{roomAlias} (directory.yaml).
func (a *API) setRoomAlias(w http.ResponseWriter, r *http.Request) error {
	alias, err := a.pathAlias(r)
	if err != nil {
		return err
	}
	var body struct {
		RoomID id.RoomID `json:"room_id"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.RoomID == "" {
		return mxerr.BadJSON.With("room_id is required")
	}
	if _, err := a.rooms.Version(r.Context(), body.RoomID); err != nil {
		return err
	}
	if err := a.rooms.SetAlias(r.Context(), alias, body.RoomID, session(r).UserID); err != nil {
		if mxerr.RoomInUse.Is(err) {
			return mxerr.Unknown.WithStatus(http.StatusConflict).With("room alias %s already exists", alias)
		}
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// deleteRoomAlias serves DELETE /_matrix/client/v3/directory/room/{roomAlias}
// (directory.yaml). The alias's creator, a server admin, or a room member
// allowed to change m.room.canonical_alias may delete it.
func (a *API) deleteRoomAlias(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	alias, err := a.pathAlias(r)
	if err != nil {
		return err
	}
	roomID, creator, err := a.rooms.ResolveAlias(r.Context(), alias)
	if err != nil {
		return err
	}
	if creator != sess.UserID && !sess.IsAdmin {
		pl, err := a.rooms.PowerLevels(r.Context(), roomID)
		if err != nil {
			return err
		}
		m, _ := a.rooms.Membership(r.Context(), roomID, sess.UserID)
		if m != "join" || pl.GetUserLevel(sess.UserID) < pl.GetEventLevel(event.StateCanonicalAlias) {
			return mxerr.Forbidden.With("you may not delete this alias")
		}
	}
	if err := a.rooms.DeleteAlias(r.Context(), alias); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// getLocalAliases serves GET /_matrix/client/v3/rooms/{roomId}/aliases (directory.yaml).
func (a *API) getLocalAliases(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	if _, err := a.roomAccess(r.Context(), session(r).UserID, roomID); err != nil {
		return err
	}
	aliases, err := a.rooms.Aliases(r.Context(), roomID)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"aliases": aliases})
}

// checkCanonicalAlias rejects an m.room.canonical_alias naming local aliases
// that do not point at the room, as the spec requires (400 M_BAD_ALIAS).
func (a *API) checkCanonicalAlias(r *http.Request, roomID id.RoomID, content map[string]json.RawMessage) error {
	var aliases []id.RoomAlias
	var one id.RoomAlias
	if raw, ok := content["alias"]; ok && json.Unmarshal(raw, &one) == nil && one != "" {
		aliases = append(aliases, one)
	}
	var alt []id.RoomAlias
	if raw, ok := content["alt_aliases"]; ok {
		if json.Unmarshal(raw, &alt) != nil {
			return mxerr.BadJSON.With("alt_aliases must be a list of aliases")
		}
		aliases = append(aliases, alt...)
	}
	for _, al := range aliases {
		server, ok := aliasServer(al)
		if !ok {
			return mxerr.InvalidParam.With("invalid alias %q", al)
		}
		if server != a.cfg.ServerName {
			continue
		}
		target, _, err := a.rooms.ResolveAlias(r.Context(), al)
		if err != nil || target != roomID {
			return (&mxerr.Error{Code: "M_BAD_ALIAS", Status: http.StatusBadRequest}).With("alias %s does not point to this room", al)
		}
	}
	return nil
}

// aliasServer returns the server part of a room alias (#local:server).
func aliasServer(alias id.RoomAlias) (string, bool) {
	s := string(alias)
	if len(s) < 4 || s[0] != '#' {
		return "", false
	}
	i := strings.IndexByte(s, ':')
	if i < 2 || i == len(s)-1 {
		return "", false
	}
	return s[i+1:], true
}
