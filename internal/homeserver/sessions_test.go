package homeserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

type refreshedTokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresInMS  int64  `json:"expires_in_ms"`
	DeviceID     string `json:"device_id"`
}

// TestRefreshTokens: a client that asks for a refresh token gets an
// access token that expires into a soft logout, and renews it with
// POST /refresh; an old refresh token works until the new tokens are
// used, then never again (spec v1.3, as in Synapse).
func TestRefreshTokens(t *testing.T) {
	const lifetime = 3 * time.Second
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine, func(c *config.Config) { c.Sessions.RefreshableAccessTokenLifetime = config.Duration(lifetime) })
		alice := hs.Client("alice")
		anon := hs.Anonymous()
		post := func(path mautrix.ClientURLPath, body any) (refreshedTokens, error) {
			var out refreshedTokens
			_, err := anon.MakeRequest(ctx, "POST", anon.BuildClientURL(path...), body, &out)
			return out, err
		}
		refresh := func(token string) (refreshedTokens, error) {
			return post(mautrix.ClientURLPath{"v3", "refresh"}, map[string]any{"refresh_token": token})
		}
		whoami := func(token string) error {
			cli, _ := mautrix.NewClient(hs.URL, alice.UserID, token)
			_, err := cli.Whoami(ctx)
			return err
		}
		softLogout := func(err error) (bool, bool) {
			var he mautrix.HTTPError
			if !errors.As(err, &he) || he.Response == nil || he.Response.StatusCode != 401 || he.RespError == nil || he.RespError.ErrCode != "M_UNKNOWN_TOKEN" {
				return false, false
			}
			soft, _ := he.RespError.ExtraData["soft_logout"].(bool)
			return true, soft
		}

		start := time.Now()
		login, err := post(mautrix.ClientURLPath{"v3", "login"}, map[string]any{
			"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": alice.UserID.String()},
			"password": "password-" + alice.UserID.Localpart(), "refresh_token": true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if login.RefreshToken == "" || login.ExpiresInMS != lifetime.Milliseconds() {
			t.Fatalf("a login asking for a refresh token: %+v", login)
		}
		if err := whoami(login.AccessToken); err != nil && time.Since(start) < lifetime {
			t.Fatalf("a fresh refreshable access token: %v", err)
		}
		time.Sleep(time.Until(start.Add(lifetime + 200*time.Millisecond)))
		if unknown, soft := softLogout(whoami(login.AccessToken)); !unknown || !soft {
			t.Fatalf("an expired access token: want 401 M_UNKNOWN_TOKEN with soft_logout true")
		}

		first, err := refresh(login.RefreshToken)
		if err != nil || first.AccessToken == "" || first.RefreshToken == "" || first.ExpiresInMS != lifetime.Milliseconds() {
			t.Fatalf("refreshing: %+v, %v", first, err)
		}
		// The answer was lost: the old refresh token still works, and the
		// tokens of the first try are revoked.
		second, err := refresh(login.RefreshToken)
		if err != nil {
			t.Fatalf("refreshing again with the old token before the new one is used: %v", err)
		}
		if unknown, soft := softLogout(whoami(first.AccessToken)); !unknown || soft {
			t.Errorf("the access token of a superseded refresh: want 401 M_UNKNOWN_TOKEN, soft_logout false")
		}
		if _, err := refresh(first.RefreshToken); err == nil {
			t.Errorf("the refresh token of a superseded refresh still works")
		}
		// Using the new access token retires the old refresh token.
		if err := whoami(second.AccessToken); err != nil {
			t.Fatalf("the refreshed access token: %v", err)
		}
		if _, err := refresh(login.RefreshToken); err == nil {
			t.Errorf("the old refresh token works after the new access token was used")
		} else if unknown, soft := softLogout(err); !unknown || soft {
			t.Errorf("a spent refresh token: %v, want 401 M_UNKNOWN_TOKEN, soft_logout false", err)
		}
		third, err := refresh(second.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}

		// Registration can ask for one too.
		reg, err := post(mautrix.ClientURLPath{"v3", "register"}, map[string]any{
			"username": "refreshreg" + engine, "password": "pw-long-enough", "refresh_token": true,
			"auth": map[string]any{"type": "m.login.dummy"},
		})
		if err != nil || reg.RefreshToken == "" || reg.ExpiresInMS == 0 {
			t.Errorf("registering with refresh_token: %+v, %v", reg, err)
		}

		// Logging out ends the refresh token with the device.
		cli, _ := mautrix.NewClient(hs.URL, alice.UserID, third.AccessToken)
		if _, err := cli.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := refresh(third.RefreshToken); err == nil {
			t.Errorf("a logged-out device's refresh token still works")
		}

		_, err = post(mautrix.ClientURLPath{"v3", "refresh"}, map[string]any{})
		wantMxErr(t, "/refresh without refresh_token", err, 400, "M_MISSING_PARAM")
		_, err = post(mautrix.ClientURLPath{"v3", "refresh"}, map[string]any{"refresh_token": 5})
		wantMxErr(t, "/refresh with a number", err, 400, "M_BAD_JSON")
		_, err = refresh("nonsense")
		wantMxErr(t, "/refresh with an unknown token", err, 401, "M_UNKNOWN_TOKEN")
	})
}

// TestLoginToken: with login_via_existing_session enabled, a logged-in
// user gets a one-time token behind their password (POST
// /login/get_token), and another device logs in with it once
// (m.login.token); with it off the endpoint and the login type are not
// offered.
func TestLoginToken(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine, func(c *config.Config) { c.Sessions.LoginViaExistingSession.Enabled = true })
		alice := hs.Client("alice")

		var flows struct {
			Flows []struct {
				Type          string `json:"type"`
				GetLoginToken bool   `json:"get_login_token"`
			} `json:"flows"`
		}
		anon := hs.Anonymous()
		if _, err := anon.MakeRequest(ctx, "GET", anon.BuildClientURL("v3", "login"), nil, &flows); err != nil {
			t.Fatal(err)
		}
		var offered bool
		for _, f := range flows.Flows {
			offered = offered || (f.Type == "m.login.token" && f.GetLoginToken)
		}
		if !offered {
			t.Errorf("GET /login does not offer m.login.token with get_login_token: %+v", flows.Flows)
		}
		caps, err := alice.Capabilities(ctx)
		if err != nil || caps.GetLoginToken == nil || !caps.GetLoginToken.Enabled {
			t.Errorf("m.get_login_token capability: %+v, %v", caps, err)
		}

		url := alice.BuildClientURL("v1", "login", "get_token")
		_, err = alice.MakeRequest(ctx, "POST", url, map[string]any{}, nil)
		var he mautrix.HTTPError
		if !errors.As(err, &he) || he.Response.StatusCode != 401 {
			t.Fatalf("get_token without auth: %v, want 401 with the UIA flows", err)
		}
		var uia struct {
			Session string `json:"session"`
		}
		_ = json.Unmarshal([]byte(he.ResponseBody), &uia)
		var got struct {
			LoginToken  string `json:"login_token"`
			ExpiresInMS int64  `json:"expires_in_ms"`
		}
		_, err = alice.MakeRequest(ctx, "POST", url, map[string]any{"auth": map[string]any{
			"type": "m.login.password", "session": uia.Session, "password": "password-" + alice.UserID.Localpart(),
			"identifier": map[string]any{"type": "m.id.user", "user": alice.UserID.String()},
		}}, &got)
		if err != nil || got.LoginToken == "" || got.ExpiresInMS != (5*time.Minute).Milliseconds() {
			t.Fatalf("get_token with the password: %+v, %v", got, err)
		}

		other := hs.Anonymous()
		resp, err := other.Login(ctx, &mautrix.ReqLogin{Type: "m.login.token", Token: got.LoginToken})
		if err != nil || resp.UserID != alice.UserID || resp.DeviceID == alice.DeviceID {
			t.Fatalf("logging in with the token: %+v, %v", resp, err)
		}
		_, err = hs.Anonymous().Login(ctx, &mautrix.ReqLogin{Type: "m.login.token", Token: got.LoginToken})
		wantMxErr(t, "a login token used twice", err, 403, "M_FORBIDDEN")
		_, err = hs.Anonymous().Login(ctx, &mautrix.ReqLogin{Type: "m.login.token"})
		wantMxErr(t, "m.login.token without a token", err, 400, "M_MISSING_PARAM")

		off := mxtest.Start(t, engine)
		bob := off.Client("bob")
		_, err = bob.MakeRequest(ctx, "POST", bob.BuildClientURL("v1", "login", "get_token"), map[string]any{}, nil)
		wantMxErr(t, "get_token while disabled", err, 404, "M_UNRECOGNIZED")
		_, err = off.Anonymous().Login(ctx, &mautrix.ReqLogin{Type: "m.login.token", Token: got.LoginToken})
		wantMxErr(t, "m.login.token while disabled", err, 400, "M_UNKNOWN")
	})
}
