package clientapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// logout serves POST /_matrix/client/v3/logout (logout.yaml): it deletes the
// requesting device and its access token.
func (a *API) logout(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	if err := a.users.Logout(r.Context(), sess.UserID, sess.DeviceID); err != nil {
		return err
	}
	a.devicesGone(r.Context(), sess.UserID, []id.DeviceID{sess.DeviceID})
	return httpx.OK(w, httpx.Empty)
}

// logoutAll serves POST /_matrix/client/v3/logout/all (logout.yaml): it
// deletes every device and access token of the requesting user. It needs no
// User-Interactive Authentication because it also ends the caller's session.
func (a *API) logoutAll(w http.ResponseWriter, r *http.Request) error {
	devs := a.allDevices(r.Context(), session(r).UserID)
	if err := a.users.LogoutAll(r.Context(), session(r).UserID); err != nil {
		return err
	}
	a.devicesGone(r.Context(), session(r).UserID, devs)
	return httpx.OK(w, httpx.Empty)
}
