package clientapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/threepid"
	"github.com/myelin-chat/myelin/internal/users"
)

// The login types Myelin offers: m.login.token only for tokens from
// POST /login/get_token, when login_via_existing_session is enabled.
const (
	loginTypePassword = "m.login.password"
	loginTypeToken    = "m.login.token"
)

// maxDeviceIDLen bounds client-chosen device IDs.
const maxDeviceIDLen = 255

type loginFlow struct {
	Type string `json:"type"`
	// GetLoginToken says that POST /login/get_token issues tokens for
	// this flow.
	GetLoginToken bool `json:"get_login_token,omitempty"`
}

type loginFlowsResp struct {
	Flows []loginFlow `json:"flows"`
}

// getLoginFlows serves GET /_matrix/client/v3/login (login.yaml).
func (a *API) getLoginFlows(w http.ResponseWriter, r *http.Request) error {
	flows := []loginFlow{{Type: loginTypePassword}}
	if a.cfg.Sessions.LoginViaExistingSession.Enabled {
		flows = append(flows, loginFlow{Type: loginTypeToken, GetLoginToken: true})
	}
	return httpx.OK(w, loginFlowsResp{Flows: flows})
}

// userIdentifier is the spec's user identifier object ("Identifier types").
type userIdentifier struct {
	Type string `json:"type"`
	// m.id.user
	User string `json:"user"`
	// m.id.thirdparty
	Medium  string `json:"medium"`
	Address string `json:"address"`
}

type loginReq struct {
	Type       string          `json:"type"`
	Identifier *userIdentifier `json:"identifier"`
	// User, Medium and Address are the deprecated forms of Identifier.
	User                     string      `json:"user"`
	Medium                   string      `json:"medium"`
	Address                  string      `json:"address"`
	Password                 *string     `json:"password"`
	Token                    *string     `json:"token"`
	DeviceID                 id.DeviceID `json:"device_id"`
	InitialDeviceDisplayName *string     `json:"initial_device_display_name"`
	// RefreshToken asks for a refresh token and an expiring access token.
	RefreshToken bool `json:"refresh_token"`
}

type loginResp struct {
	UserID      id.UserID   `json:"user_id"`
	AccessToken string      `json:"access_token"`
	DeviceID    id.DeviceID `json:"device_id"`
	// RefreshToken and ExpiresInMS are set when refresh_token was asked.
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresInMS  int64  `json:"expires_in_ms,omitempty"`
	// HomeServer is deprecated but still read by older clients.
	HomeServer string         `json:"home_server"`
	WellKnown  map[string]any `json:"well_known,omitempty"`
}

// login serves POST /_matrix/client/v3/login (login.yaml): m.login.password
// with an m.id.user identifier (full user ID or localpart) or the deprecated
// top-level user field.
func (a *API) login(w http.ResponseWriter, r *http.Request) error {
	var req loginReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	var userID id.UserID
	switch req.Type {
	case "":
		return mxerr.MissingParam.With("type is required")
	case loginTypePassword:
		if req.Identifier == nil && req.User == "" && (req.Medium != "" || req.Address != "") {
			req.Identifier = &userIdentifier{Type: "m.id.thirdparty", Medium: req.Medium, Address: req.Address}
		}
		var err error
		if userID, err = a.identifiedUser(r.Context(), req.Identifier, req.User); err != nil {
			return err
		}
		if req.Password == nil {
			return mxerr.MissingParam.With("password is required")
		}
		if err := validDeviceID(req.DeviceID); err != nil {
			return err
		}
		if err := a.users.CheckPassword(r.Context(), userID, *req.Password); err != nil {
			return err
		}
	case loginTypeToken:
		if !a.cfg.Sessions.LoginViaExistingSession.Enabled {
			return mxerr.Unknown.WithStatus(http.StatusBadRequest).With("unknown login type %q", req.Type)
		}
		if req.Token == nil || *req.Token == "" {
			return mxerr.MissingParam.With("token is required")
		}
		if err := validDeviceID(req.DeviceID); err != nil {
			return err
		}
		var err error
		if userID, err = a.users.UseLoginToken(r.Context(), *req.Token); err != nil {
			return err
		}
		if acct, err := a.users.Get(r.Context(), userID); err != nil {
			return err
		} else if acct.Deactivated {
			return mxerr.UserDeactivated.With("the account has been deactivated")
		}
	default:
		return mxerr.Unknown.WithStatus(http.StatusBadRequest).With("unknown login type %q", req.Type)
	}
	isNew := req.DeviceID == ""
	if !isNew {
		_, err := a.users.Device(r.Context(), userID, req.DeviceID)
		isNew = errors.Is(err, mxerr.NotFound)
	}
	tokens, err := a.issueTokens(r, userID, req.DeviceID, req.InitialDeviceDisplayName, req.RefreshToken)
	if err != nil {
		return err
	}
	if isNew {
		a.devicesChanged(r.Context(), userID, []id.DeviceID{tokens.DeviceID})
	}
	resp := loginResp{UserID: userID, AccessToken: tokens.AccessToken, DeviceID: tokens.DeviceID, HomeServer: a.cfg.ServerName,
		RefreshToken: tokens.RefreshToken, ExpiresInMS: tokens.ExpiresIn.Milliseconds()}
	if a.cfg.PublicBaseURL != "" {
		resp.WellKnown = map[string]any{
			"m.homeserver": map[string]string{"base_url": strings.TrimSuffix(a.cfg.PublicBaseURL, "/")},
		}
	}
	return httpx.OK(w, resp)
}

// identifiedUser resolves the user identifier of a login or of an
// m.login.password UIA stage (or the deprecated top-level user field) to a
// local user ID. Localparts are matched case-insensitively, as Synapse does:
// local accounts only have lowercase localparts.
func (a *API) identifiedUser(ctx context.Context, ident *userIdentifier, legacyUser string) (id.UserID, error) {
	user := legacyUser
	if ident != nil {
		switch ident.Type {
		case "m.id.user":
			user = ident.User
		case "m.id.thirdparty", "m.id.phone":
			// Only e-mail addresses are bound to accounts here; the spec
			// answers unknown 3PIDs with 403.
			if ident.Type == "m.id.thirdparty" && ident.Medium == threepid.MediumEmail && a.threepids != nil {
				owner, err := a.threepids.Owner(ctx, threepid.MediumEmail, strings.ToLower(strings.TrimSpace(ident.Address)))
				if err != nil {
					return "", err
				}
				if owner != "" {
					return owner, nil
				}
			}
			return "", mxerr.Forbidden.With("no account is bound to this third-party identifier")
		case "":
			return "", mxerr.MissingParam.With("identifier.type is required")
		default:
			return "", mxerr.Unknown.WithStatus(http.StatusBadRequest).With("unknown identifier type %q", ident.Type)
		}
	}
	if user == "" {
		return "", mxerr.MissingParam.With("identifier.user is required")
	}
	localpart := user
	if strings.HasPrefix(user, "@") {
		lp, server, err := id.UserID(user).Parse()
		if err != nil {
			return "", mxerr.InvalidParam.With("invalid user ID %q", user)
		}
		if !strings.EqualFold(server, a.users.ServerName()) {
			return "", mxerr.Forbidden.With("%s is not a user of this server", user)
		}
		localpart = lp
	}
	return a.users.UserID(strings.ToLower(localpart)), nil
}

// validDeviceID checks a client-chosen device ID; empty means "generate one".
func validDeviceID(d id.DeviceID) error {
	if len(d) > maxDeviceIDLen {
		return mxerr.InvalidParam.With("device_id is longer than %d bytes", maxDeviceIDLen)
	}
	return nil
}

// issueTokens logs a device in, with a refresh token and an expiring
// access token when the client asked for one.
func (a *API) issueTokens(r *http.Request, user id.UserID, dev id.DeviceID, displayName *string, refreshable bool) (users.Tokens, error) {
	if refreshable {
		return a.users.LoginRefreshable(r.Context(), user, dev, displayName)
	}
	token, d, err := a.users.Login(r.Context(), user, dev, displayName)
	return users.Tokens{AccessToken: token, DeviceID: d}, err
}
