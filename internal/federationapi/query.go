package federationapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// queryRoomDirectory handles GET /_matrix/federation/v1/query/directory
// (query.yaml).
func (a *API) queryRoomDirectory(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	alias := id.RoomAlias(r.URL.Query().Get("room_alias"))
	if alias == "" {
		return mxerr.MissingParam.With("room_alias is required")
	}
	if _, server, _ := strings.Cut(alias.String(), ":"); server != a.serverName {
		return mxerr.NotFound.With("the alias does not belong to this server")
	}
	roomID, _, err := a.rooms.ResolveAlias(ctx, alias)
	if err != nil {
		return err
	}
	servers, err := a.rooms.Servers(ctx, roomID)
	if err != nil {
		return err
	}
	if len(servers) == 0 {
		servers = []string{a.serverName}
	}
	return httpx.OK(w, map[string]any{"room_id": roomID, "servers": servers})
}

// queryProfile handles GET /_matrix/federation/v1/query/profile (query.yaml).
func (a *API) queryProfile(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	user := id.UserID(q.Get("user_id"))
	if user == "" {
		return mxerr.MissingParam.With("user_id is required")
	}
	if user.Homeserver() != a.serverName {
		return mxerr.NotFound.With("the user does not belong to this server")
	}
	fields, err := a.users.Profile(r.Context(), user)
	if err != nil {
		return err
	}
	if field := q.Get("field"); field != "" {
		// A field not set gives an empty object, as before custom fields.
		v, ok := fields[field]
		fields = map[string]json.RawMessage{}
		if ok {
			fields[field] = v
		}
	}
	return httpx.OK(w, fields)
}
