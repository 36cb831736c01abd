package clientapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/threepid"
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
	// RefreshToken asks for a refresh token and an expiring access token.
	RefreshToken bool `json:"refresh_token"`
	// GuestAccessToken upgrades the guest it belongs to into a full
	// account (guest_access.md); username must then be its localpart.
	GuestAccessToken string `json:"guest_access_token"`
}

type registerResp struct {
	UserID      id.UserID   `json:"user_id"`
	AccessToken string      `json:"access_token,omitempty"`
	DeviceID    id.DeviceID `json:"device_id,omitempty"`
	// RefreshToken and ExpiresInMS are set when refresh_token was asked.
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresInMS  int64  `json:"expires_in_ms,omitempty"`
	// HomeServer is deprecated but still read by older clients.
	HomeServer string `json:"home_server"`
}

// registrationFlows are the UIA flows of /register under the current
// config. With e-mail on, a flow that validates an address is offered
// beside the others, or instead of them when registrations_require_3pid
// names email.
func (a *API) registrationFlows() [][]string {
	var base []string
	if a.cfg.RegistrationRequiresToken {
		base = append(base, stageRegistrationToken)
	}
	if a.cfg.Recaptcha.Enabled {
		base = append(base, stageRecaptcha)
	}
	emailOn := a.threepids != nil && a.threepids.EmailEnabled()
	if emailOn && slices.Contains(a.cfg.RegistrationsRequire3PID, threepid.MediumEmail) {
		return [][]string{append(base, stageEmail)}
	}
	flows := [][]string{base}
	if len(base) == 0 {
		flows = [][]string{{stageDummy}}
	}
	if emailOn {
		flows = append(flows, append(slices.Clone(base), stageEmail))
	}
	return flows
}

// registrationParams are the UIA params of registration: the captcha's
// public key when a captcha is asked for.
func (a *API) registrationParams() map[string]any {
	if !a.cfg.Recaptcha.Enabled {
		return nil
	}
	return map[string]any{stageRecaptcha: map[string]string{"public_key": a.cfg.Recaptcha.PublicKey}}
}

// verifyRecaptcha checks a captcha response with the configured siteverify
// endpoint (M_CAPTCHA_INVALID when it says no).
func (a *API) verifyRecaptcha(ctx context.Context, response, remoteIP string) error {
	if response == "" {
		return mxerr.CaptchaNeeded.With("response is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	form := url.Values{"secret": {a.cfg.Recaptcha.PrivateKey}, "response": {response}, "remoteip": {remoteIP}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.Recaptcha.SiteverifyAPI, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("building captcha check: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return mxerr.Unknown.With("the captcha could not be checked").Wrap(err)
	}
	defer resp.Body.Close()
	var out struct {
		Success bool `json:"success"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return mxerr.Unknown.With("the captcha service gave no answer").Wrap(fmt.Errorf("status %d: %v", resp.StatusCode, err))
	}
	if !out.Success {
		return mxerr.CaptchaInvalid.With("the captcha was not solved")
	}
	return nil
}

// register serves POST /_matrix/client/v3/register (registration.yaml).
// kind=guest makes a guest account when allow_guest_access is on. The
// username is checked before User-Interactive Authentication starts, as
// the spec asks, and again when the account is created.
func (a *API) register(w http.ResponseWriter, r *http.Request) error {
	switch kind := r.URL.Query().Get("kind"); kind {
	case "", "user":
	case "guest":
		return a.registerGuest(w, r)
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
	var guest id.UserID
	if req.GuestAccessToken != "" {
		var err error
		if guest, err = a.upgradableGuest(r, req); err != nil {
			return err
		}
	} else if req.Username != nil {
		// As Synapse does: Alice registers @alice, and logs in as Alice
		// too, since login downcases (identifiedUser). The availability
		// check leaves the case alone, as Synapse's does.
		lower := strings.ToLower(*req.Username)
		req.Username = &lower
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

	sess, done, err := a.interactiveAuth(w, r, uiaCall{purpose: "register", flows: a.registrationFlows(), params: a.registrationParams(), auth: req.Auth})
	if err != nil || !done {
		return err
	}

	var userID id.UserID
	if guest != "" {
		userID, err = guest, a.users.UpgradeGuest(r.Context(), guest, req.Password)
	} else {
		userID, err = a.createAccount(r, req, sess.regToken)
	}
	if errors.Is(err, users.ErrRegistrationTokenInvalid) {
		// The token was spent or expired since the stage completed; the
		// client has to start over with another one.
		a.uia.finish(sess.id)
	}
	if err != nil {
		return err
	}
	a.uia.finish(sess.id)
	if sess.emailSID != "" {
		// The account exists now; as in Synapse, an address that cannot
		// be bound (taken meanwhile) does not undo it.
		if err := a.bindValidated(r.Context(), userID, sess.emailSID, sess.emailSecret); err != nil {
			a.log.Warn("binding the e-mail address of a registration", "user_id", userID, "err", err)
		}
	}
	if guest == "" {
		// An upgraded guest keeps the rooms it is in.
		a.autoJoin(r.Context(), userID)
	}
	resp := registerResp{UserID: userID, HomeServer: a.cfg.ServerName}
	if !req.InhibitLogin {
		t, err := a.issueTokens(r, userID, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
		if err != nil {
			return err
		}
		resp.AccessToken, resp.DeviceID, resp.RefreshToken, resp.ExpiresInMS = t.AccessToken, t.DeviceID, t.RefreshToken, t.ExpiresIn.Milliseconds()
	}
	return httpx.OK(w, resp)
}

// registerGuest makes a guest account (kind=guest): no User-Interactive
// Authentication, and every body parameter but initial_device_display_name
// ignored, as registration.yaml says; the device ID is ours to pick.
func (a *API) registerGuest(w http.ResponseWriter, r *http.Request) error {
	if !a.cfg.AllowGuestAccess {
		return mxerr.GuestAccessForbidden.With("guest access is disabled")
	}
	var req struct {
		InitialDeviceDisplayName *string `json:"initial_device_display_name"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	userID, err := a.users.CreateGuest(r.Context())
	if err != nil {
		return err
	}
	resp := registerResp{UserID: userID, HomeServer: a.cfg.ServerName}
	resp.AccessToken, resp.DeviceID, err = a.users.Login(r.Context(), userID, "", req.InitialDeviceDisplayName)
	if err != nil {
		return err
	}
	return httpx.OK(w, resp)
}

// upgradableGuest checks a registration that presents a guest's access
// token: the token must be a guest's, and username its localpart, as
// guest_access.md asks (403 M_FORBIDDEN otherwise, as Synapse answers).
func (a *API) upgradableGuest(r *http.Request, req registerReq) (id.UserID, error) {
	sess, err := a.users.Authenticate(r.Context(), req.GuestAccessToken)
	if err != nil || !sess.IsGuest {
		return "", mxerr.Forbidden.With("guest_access_token is not a guest's access token")
	}
	if req.Username == nil || strings.ToLower(*req.Username) != sess.UserID.Localpart() {
		return "", mxerr.Forbidden.With("username must be the guest's localpart to upgrade it")
	}
	return sess.UserID, nil
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

// requestTokenToRegisterEmail serves POST
// /_matrix/client/v3/register/email/requestToken (registration.yaml),
// for the m.login.email.identity stage (administrative_contact.go).
func (a *API) requestTokenToRegisterEmail(w http.ResponseWriter, r *http.Request) error {
	return a.requestEmailToken(w, r, threepid.Register, "email-based registration is disabled on this server", a.emailUnused)
}

// requestTokenToRegisterMSISDN serves POST
// /_matrix/client/v3/register/msisdn/requestToken (registration.yaml).
func (a *API) requestTokenToRegisterMSISDN(w http.ResponseWriter, r *http.Request) error {
	return msisdnTokenRefused(r, "registration by phone number is not supported on this homeserver")
}
