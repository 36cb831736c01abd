package clientapi

import (
	"crypto/rand"
	"errors"
	"math/big"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/users"
)

// maxPasswordLen matches Synapse's limit on new passwords.
const maxPasswordLen = 512

var errRegistrationDisabled = mxerr.Forbidden.With("Registration is disabled")

type registerReq struct {
	Auth                     *authDict   `json:"auth"`
	Username                 *string     `json:"username"`
	Password                 string      `json:"password"`
	DeviceID                 id.DeviceID `json:"device_id"`
	InitialDeviceDisplayName *string     `json:"initial_device_display_name"`
	InhibitLogin             bool        `json:"inhibit_login"`
	// RefreshToken is accepted and ignored: Myelin issues no refresh tokens.
	RefreshToken bool `json:"refresh_token"`
}

type registerResp struct {
	UserID      id.UserID   `json:"user_id"`
	AccessToken string      `json:"access_token,omitempty"`
	DeviceID    id.DeviceID `json:"device_id,omitempty"`
	// HomeServer is deprecated but still read by older clients.
	HomeServer string `json:"home_server"`
}

// registrationFlows are the UIA flows of /register under the current config.
func (a *API) registrationFlows() [][]string {
	if a.cfg.RegistrationRequiresToken {
		return [][]string{{stageRegistrationToken}}
	}
	return [][]string{{stageDummy}}
}

// register serves POST /_matrix/client/v3/register (registration.yaml).
// Only kind=user is supported. The username is checked before
// User-Interactive Authentication starts, as the spec asks, and again when
// the account is created.
func (a *API) register(w http.ResponseWriter, r *http.Request) error {
	switch kind := r.URL.Query().Get("kind"); kind {
	case "", "user":
	case "guest":
		return mxerr.GuestAccessForbidden.With("guest registration is not supported")
	default:
		return mxerr.InvalidParam.With("unknown kind %q", kind)
	}
	if !a.cfg.EnableRegistration {
		return errRegistrationDisabled
	}
	var req registerReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Username != nil {
		if err := a.usernameAvailable(r, *req.Username); err != nil {
			return err
		}
	}
	if len(req.Password) > maxPasswordLen {
		return mxerr.InvalidParam.With("password is longer than %d bytes", maxPasswordLen)
	}
	if err := validDeviceID(req.DeviceID); err != nil {
		return err
	}

	sess, done, err := a.interactiveAuth(w, r, uiaCall{purpose: "register", flows: a.registrationFlows(), auth: req.Auth})
	if err != nil || !done {
		return err
	}

	userID, err := a.createAccount(r, req, sess.regToken)
	if errors.Is(err, users.ErrRegistrationTokenInvalid) {
		// The token was spent or expired since the stage completed; the
		// client has to start over with another one.
		a.uia.finish(sess.id)
	}
	if err != nil {
		return err
	}
	a.uia.finish(sess.id)
	resp := registerResp{UserID: userID, HomeServer: a.cfg.ServerName}
	if !req.InhibitLogin {
		resp.AccessToken, resp.DeviceID, err = a.users.Login(r.Context(), userID, req.DeviceID, req.InitialDeviceDisplayName)
		if err != nil {
			return err
		}
	}
	return httpx.OK(w, resp)
}

// createAccount creates the account of a registration whose auth is
// complete, spending a use of regToken when the token stage was used. With
// no username it picks a free random numeric localpart.
func (a *API) createAccount(r *http.Request, req registerReq, regToken string) (id.UserID, error) {
	create := func(localpart string) (id.UserID, error) {
		if regToken != "" {
			return a.users.CreateWithRegistrationToken(r.Context(), localpart, req.Password, regToken)
		}
		return a.users.Create(r.Context(), localpart, req.Password, false)
	}
	if req.Username != nil {
		return create(*req.Username)
	}
	for range 10 {
		userID, err := create(randomLocalpart())
		if !errors.Is(err, mxerr.UserInUse) {
			return userID, err
		}
	}
	return "", errors.New("registering: no free generated localpart after 10 attempts")
}

// randomLocalpart returns a 10-digit numeric localpart.
func randomLocalpart() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(9_000_000_000))
	return n.Add(n, big.NewInt(1_000_000_000)).String()
}

// usernameAvailable checks that localpart is valid and free.
func (a *API) usernameAvailable(r *http.Request, localpart string) error {
	if err := a.users.ValidateLocalpart(localpart); err != nil {
		return err
	}
	free, err := a.users.Available(r.Context(), localpart)
	if err != nil {
		return err
	}
	if !free {
		return mxerr.UserInUse.With("user ID already taken")
	}
	return nil
}

// checkUsernameAvailability serves GET /_matrix/client/v3/register/available
// (registration.yaml). Like Synapse it answers 403 when registration is
// disabled, so the endpoint cannot be used to list accounts.
func (a *API) checkUsernameAvailability(w http.ResponseWriter, r *http.Request) error {
	if !a.cfg.EnableRegistration {
		return errRegistrationDisabled
	}
	username := r.URL.Query().Get("username")
	if username == "" {
		return mxerr.MissingParam.With("username is required")
	}
	if err := a.usernameAvailable(r, username); err != nil {
		return err
	}
	return httpx.OK(w, map[string]bool{"available": true})
}
