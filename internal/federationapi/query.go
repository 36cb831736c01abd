package federationapi

import (
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
	acct, err := a.users.Get(r.Context(), user)
	if err != nil {
		return err
	}
	out := map[string]string{}
	field := q.Get("field")
	if acct.DisplayName != "" && (field == "" || field == "displayname") {
		out["displayname"] = acct.DisplayName
	}
	if acct.AvatarURL != "" && (field == "" || field == "avatar_url") {
		out["avatar_url"] = acct.AvatarURL
	}
	return httpx.OK(w, out)
}
