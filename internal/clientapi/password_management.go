package clientapi

import (
	"context"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/threepid"
)

type changePasswordReq struct {
	NewPassword *string `json:"new_password"`
	// LogoutDevices defaults to true.
	LogoutDevices *bool     `json:"logout_devices"`
	Auth          *authDict `json:"auth"`
}

// changePassword serves POST /_matrix/client/v3/account/password
// (password_management.yaml), behind User-Interactive Authentication: a
// logged-in user proves the current password; a user who forgot it, with
// no access token, proves an e-mail address bound to the account
// (m.login.email.identity, after /account/password/email/requestToken),
// when e-mail is on. A logged-in request's token survives; with
// logout_devices (the default) every other device is logged out.
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
	call := uiaCall{purpose: "change_password", user: sess.UserID, flows: passwordFlows, auth: req.Auth}
	if sess.UserID == "" {
		if a.threepids == nil || !a.threepids.EmailEnabled() {
			return mxerr.MissingToken.With("missing access token")
		}
		call.flows = [][]string{{stageEmail}}
	}
	uia, done, err := a.interactiveAuth(w, r, call)
	if err != nil || !done {
		return err
	}
	user := sess.UserID
	if user == "" {
		tp, err := a.threepids.Validated(r.Context(), uia.emailSID, uia.emailSecret)
		if err != nil {
			return err
		}
		if user, err = a.threepids.Owner(r.Context(), tp.Medium, tp.Address); err != nil {
			return err
		} else if user == "" {
			return mxerr.ThreepidNotFound.With("no account has this address")
		}
		if err := a.threepids.Spend(r.Context(), uia.emailSID); err != nil {
			return err
		}
	}
	if err := a.users.SetPassword(r.Context(), user, *req.NewPassword); err != nil {
		return err
	}
	a.uia.finish(uia.id)
	if req.LogoutDevices == nil || *req.LogoutDevices {
		devs, err := a.users.Devices(r.Context(), user)
		if err != nil {
			return err
		}
		var others []id.DeviceID
		for _, d := range devs {
			if d.DeviceID != sess.DeviceID || sess.UserID == "" {
				others = append(others, d.DeviceID)
			}
		}
		if err := a.users.DeleteDevices(r.Context(), user, others); err != nil {
			return err
		}
		a.devicesGone(r.Context(), user, others)
	}
	return httpx.OK(w, httpx.Empty)
}

// requestTokenToResetPasswordEmail serves POST
// /_matrix/client/v3/account/password/email/requestToken
// (password_management.yaml): a mail that lets the owner of an address
// bound to an account set a new password (changePassword).
func (a *API) requestTokenToResetPasswordEmail(w http.ResponseWriter, r *http.Request) error {
	return a.requestEmailToken(w, r, threepid.PasswordReset, "email-based password resets are disabled on this server",
		func(ctx context.Context, address string) error {
			// Synapse's answer (request_token_inhibit_3pid_errors off).
			if owner, err := a.threepids.Owner(ctx, threepid.MediumEmail, address); err != nil {
				return err
			} else if owner == "" {
				return mxerr.ThreepidNotFound.With("email not found")
			}
			return nil
		})
}

// requestTokenToResetPasswordMSISDN serves POST
// /_matrix/client/v3/account/password/msisdn/requestToken
// (password_management.yaml).
func (a *API) requestTokenToResetPasswordMSISDN(w http.ResponseWriter, r *http.Request) error {
	return msisdnTokenRefused(r, "phone-based password resets are not supported on this server")
}
