package federationapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// userDevices serves GET /_matrix/federation/v1/user/devices/{userId}
// (user_devices.yaml).
func (a *API) userDevices(w http.ResponseWriter, r *http.Request) error {
	resp, err := a.e2ee.UserDevices(r.Context(), id.UserID(r.PathValue("userId")))
	if err != nil {
		return err
	}
	return httpx.OK(w, resp)
}
