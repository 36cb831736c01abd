package clientapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
)

type whoamiResp struct {
	UserID   id.UserID   `json:"user_id"`
	DeviceID id.DeviceID `json:"device_id,omitempty"`
	IsGuest  bool        `json:"is_guest"`
}

// getTokenOwner serves GET /_matrix/client/v3/account/whoami (whoami.yaml).
func (a *API) getTokenOwner(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	return httpx.OK(w, whoamiResp{UserID: sess.UserID, DeviceID: sess.DeviceID, IsGuest: sess.IsGuest})
}
