package clientapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type changePasswordReq struct {
	NewPassword *string `json:"new_password"`
	// LogoutDevices defaults to true.
	LogoutDevices *bool     `json:"logout_devices"`
	Auth          *authDict `json:"auth"`
}

// changePassword serves POST /_matrix/client/v3/account/password
// (password_management.yaml), behind User-Interactive Authentication with
// the current password. Only logged-in users can change their password:
// without email, there is no flow for a forgotten one. The requesting
// token survives; with logout_devices (the default) every other device is
// logged out.
func (a *API) changePassword(w http.ResponseWriter, r *http.Request) error {
	var req changePasswordReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.NewPassword == nil || *req.NewPassword == "" {
		return mxerr.MissingParam.With("new_password is required")
	}
	if len(*req.NewPassword) > maxPasswordLen {
		return mxerr.InvalidParam.With("new_password is longer than %d bytes", maxPasswordLen)
	}
	sess := session(r)
	uia, done, err := a.interactiveAuth(w, r, uiaCall{
		purpose: "change_password", user: sess.UserID, flows: passwordFlows, auth: req.Auth,
	})
	if err != nil || !done {
		return err
	}
	if err := a.users.SetPassword(r.Context(), sess.UserID, *req.NewPassword); err != nil {
		return err
	}
	a.uia.finish(uia.id)
	if req.LogoutDevices == nil || *req.LogoutDevices {
		devs, err := a.users.Devices(r.Context(), sess.UserID)
		if err != nil {
			return err
		}
		var others []id.DeviceID
		for _, d := range devs {
			if d.DeviceID != sess.DeviceID {
				others = append(others, d.DeviceID)
			}
		}
		if err := a.users.DeleteDevices(r.Context(), sess.UserID, others); err != nil {
			return err
		}
		a.devicesGone(r.Context(), sess.UserID, others)
	}
	return httpx.OK(w, httpx.Empty)
}

// requestTokenToResetPasswordEmail serves POST
// /_matrix/client/v3/account/password/email/requestToken
// (password_management.yaml): Myelin sends no e-mail
// (administrative_contact.go).
func (a *API) requestTokenToResetPasswordEmail(w http.ResponseWriter, r *http.Request) error {
	return emailTokenRefused(r, "email-based password resets are disabled on this server")
}

// requestTokenToResetPasswordMSISDN serves POST
// /_matrix/client/v3/account/password/msisdn/requestToken
// (password_management.yaml).
func (a *API) requestTokenToResetPasswordMSISDN(w http.ResponseWriter, r *http.Request) error {
	return msisdnTokenRefused(r, "phone-based password resets are not supported on this server")
}
