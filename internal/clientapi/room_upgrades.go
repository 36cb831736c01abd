package clientapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/upgrade"
)

// WithUpgrades serves room upgrades from u.
func WithUpgrades(u *upgrade.Service) Option { return func(a *API) { a.upgrades = u } }

type upgradeRoomReq struct {
	NewVersion         *id.RoomVersion `json:"new_version"`
	AdditionalCreators []id.UserID     `json:"additional_creators"`
}

// upgradeRoom serves POST /_matrix/client/v3/rooms/{roomId}/upgrade
// (room_upgrades.yaml, "Server behaviour"); package upgrade does the work.
func (a *API) upgradeRoom(w http.ResponseWriter, r *http.Request) error {
	if a.upgrades == nil {
		return mxerr.Unrecognized.With("room upgrades are not enabled")
	}
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var req upgradeRoomReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.NewVersion == nil || *req.NewVersion == "" {
		return mxerr.BadJSON.With("new_version is required")
	}
	user := session(r).UserID
	join, _ := json.Marshal(a.memberContent(r.Context(), user, "join"))
	newID, err := a.upgrades.Upgrade(r.Context(), upgrade.Request{
		User: user, Room: roomID, Version: *req.NewVersion,
		AdditionalCreators: req.AdditionalCreators, JoinContent: join,
	})
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"replacement_room": newID})
}
