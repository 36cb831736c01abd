package clientapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// acctReq sends one raw client-server request and returns the status and
// the decoded JSON object. body is sent as is when it is a string and as
// JSON otherwise; path is relative to /_matrix/client.
func acctReq(t *testing.T, s *mxtest.Server, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.URL+"/_matrix/client"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: status %d, body is not a JSON object: %q", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// acctWantErr checks a Matrix error response.
func acctWantErr(t *testing.T, what string, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["errcode"] != wantCode {
		t.Errorf("%s: got %d %v, want %d %s", what, status, body, wantStatus, wantCode)
	}
}

// acctWantUIA checks a 401 User-Interactive Authentication response offering
// exactly flows, with errcode wantCode ("" for none), and returns its session.
func acctWantUIA(t *testing.T, what string, status int, body map[string]any, flows [][]string, wantCode string) string {
	t.Helper()
	if status != http.StatusUnauthorized {
		t.Fatalf("%s: status %d %v, want 401", what, status, body)
	}
	var got [][]string
	fl, _ := body["flows"].([]any)
	for _, f := range fl {
		var stages []string
		for _, st := range f.(map[string]any)["stages"].([]any) {
			stages = append(stages, st.(string))
		}
		got = append(got, stages)
	}
	if !slices.EqualFunc(got, flows, slices.Equal) {
		t.Errorf("%s: flows %v, want %v", what, got, flows)
	}
	if _, ok := body["params"].(map[string]any); !ok {
		t.Errorf("%s: params missing: %v", what, body)
	}
	if _, ok := body["completed"].([]any); !ok {
		t.Errorf("%s: completed missing: %v", what, body)
	}
	code, _ := body["errcode"].(string)
	if code != wantCode {
		t.Errorf("%s: errcode %q, want %q", what, code, wantCode)
	}
	sess, _ := body["session"].(string)
	if sess == "" {
		t.Fatalf("%s: no session in %v", what, body)
	}
	return sess
}

func dummyAuth(session string) map[string]any {
	return map[string]any{"type": "m.login.dummy", "session": session}
}

func passwordAuth(session string, user id.UserID, password string) map[string]any {
	a := map[string]any{
		"type":       "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": user.String()},
		"password":   password,
	}
	if session != "" {
		a["session"] = session
	}
	return a
}

// wantMatrixErr checks that a mautrix call failed with errcode code and status.
func wantMatrixErr(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || httpErr.RespError == nil {
		t.Errorf("%s: err = %v, want %d %s", what, err, status, code)
		return
	}
	if httpErr.RespError.ErrCode != code || !httpErr.IsStatus(status) {
		t.Errorf("%s: got %d %s, want %d %s", what, httpErr.Response.StatusCode, httpErr.RespError.ErrCode, status, code)
	}
}

func TestRegisterDummyFlow(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		ctx := context.Background()

		st, body := acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "alice", "password": "pw-alice"})
		sess := acctWantUIA(t, "register without auth", st, body, [][]string{{"m.login.dummy"}}, "")

		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{
			"username": "alice", "password": "pw-alice", "auth": dummyAuth(sess),
			"device_id": "ALICEDEV", "initial_device_display_name": "Alice's phone",
		})
		if st != 200 || body["user_id"] != "@alice:localhost" || body["device_id"] != "ALICEDEV" || body["access_token"] == nil {
			t.Fatalf("register with dummy auth: %d %v", st, body)
		}
		if _, ok := body["refresh_token"]; ok {
			t.Errorf("register returned a refresh token: %v", body)
		}
		cli, _ := mautrix.NewClient(s.URL, "@alice:localhost", body["access_token"].(string))
		who, err := cli.Whoami(ctx)
		if err != nil || who.UserID != "@alice:localhost" || who.DeviceID != "ALICEDEV" {
			t.Errorf("whoami after registration = %+v, %v", who, err)
		}
		dev, err := cli.GetDeviceInfo(ctx, "ALICEDEV")
		if err != nil || dev.DisplayName != "Alice's phone" {
			t.Errorf("device after registration = %+v, %v", dev, err)
		}

		// The session authorised one registration; it is spent.
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "alice2", "auth": dummyAuth(sess)})
		acctWantErr(t, "reusing a spent session", st, body, 400, "M_UNKNOWN")

		// The mautrix helper works, on the r0 prefix too.
		resp, err := s.Anonymous().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "bob", Password: "pw-bob"})
		if err != nil || resp.UserID != "@bob:localhost" || resp.AccessToken == "" || resp.DeviceID == "" {
			t.Fatalf("RegisterDummy = %+v, %v", resp, err)
		}
		st, body = acctReq(t, s, "POST", "/r0/register", "", map[string]any{})
		acctWantUIA(t, "r0 register", st, body, [][]string{{"m.login.dummy"}}, "")

		// inhibit_login gives no token or device.
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{})
		sess = acctWantUIA(t, "register", st, body, [][]string{{"m.login.dummy"}}, "")
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{
			"username": "carol", "password": "pw", "inhibit_login": true, "auth": dummyAuth(sess),
		})
		if st != 200 || body["user_id"] != "@carol:localhost" || body["access_token"] != nil || body["device_id"] != nil {
			t.Errorf("inhibit_login: %d %v", st, body)
		}

		// Without a username the server picks one.
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{})
		sess = acctWantUIA(t, "register", st, body, [][]string{{"m.login.dummy"}}, "")
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"password": "pw", "auth": dummyAuth(sess)})
		uid, _ := body["user_id"].(string)
		if st != 200 || !strings.HasPrefix(uid, "@") || !strings.HasSuffix(uid, ":localhost") {
			t.Errorf("register without username: %d %v", st, body)
		}

		// A stage attempt without a prior session is accepted.
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{
			"username": "dave", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"},
		})
		if st != 200 || body["user_id"] != "@dave:localhost" {
			t.Errorf("one-shot dummy registration: %d %v", st, body)
		}

		// An unknown session is an error, not a fresh start.
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "erin", "auth": dummyAuth("nope")})
		acctWantErr(t, "unknown session", st, body, 400, "M_UNKNOWN")
	})
}

func TestRegisterRejections(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		s.Register("taken", "pw")

		tests := []struct {
			name       string
			path       string
			body       any
			wantStatus int
			wantCode   string
		}{
			{"username taken, before UIA", "/v3/register", map[string]any{"username": "taken", "password": "pw"}, 400, "M_USER_IN_USE"},
			// Registration downcases, as Synapse does: Taken is taken.
			{"uppercase username taken", "/v3/register", map[string]any{"username": "Taken", "password": "pw"}, 400, "M_USER_IN_USE"},
			{"username with a space", "/v3/register", map[string]any{"username": "al ice"}, 400, "M_INVALID_USERNAME"},
			{"empty username", "/v3/register", map[string]any{"username": ""}, 400, "M_INVALID_USERNAME"},
			{"guest", "/v3/register?kind=guest", map[string]any{}, 403, "M_GUEST_ACCESS_FORBIDDEN"},
			{"unknown kind", "/v3/register?kind=robot", map[string]any{}, 400, "M_INVALID_PARAM"},
			{"malformed JSON", "/v3/register", `{"username": "x"`, 400, "M_NOT_JSON"},
			{"username of the wrong type", "/v3/register", `{"username": 5}`, 400, "M_BAD_JSON"},
			{"auth of the wrong type", "/v3/register", `{"username": "y", "auth": "dummy"}`, 400, "M_BAD_JSON"},
			{"body not an object", "/v3/register", `[1, 2]`, 400, "M_BAD_JSON"},
			{"password too long", "/v3/register", map[string]any{"password": strings.Repeat("x", 513)}, 400, "M_INVALID_PARAM"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st, body := acctReq(t, s, "POST", tt.path, "", tt.body)
				acctWantErr(t, tt.name, st, body, tt.wantStatus, tt.wantCode)
			})
		}

		// Taken after UIA started: the check is repeated at creation.
		st, body := acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "racer"})
		sess := acctWantUIA(t, "register racer", st, body, [][]string{{"m.login.dummy"}}, "")
		s.Register("racer", "pw")
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "racer", "auth": dummyAuth(sess)})
		acctWantErr(t, "username taken during UIA", st, body, 400, "M_USER_IN_USE")
	})
}

func TestUsernameAvailability(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		s.Register("taken", "pw")
		ctx := context.Background()

		resp, err := s.Anonymous().RegisterAvailable(ctx, "free")
		if err != nil || !resp.Available {
			t.Errorf("RegisterAvailable(free) = %+v, %v", resp, err)
		}
		_, err = s.Anonymous().RegisterAvailable(ctx, "taken")
		wantMatrixErr(t, "taken", err, 400, "M_USER_IN_USE")
		_, err = s.Anonymous().RegisterAvailable(ctx, "Taken!")
		wantMatrixErr(t, "invalid", err, 400, "M_INVALID_USERNAME")
		st, body := acctReq(t, s, "GET", "/v3/register/available", "", nil)
		acctWantErr(t, "no username", st, body, 400, "M_MISSING_PARAM")
	})
}

func TestRegistrationDisabled(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine, func(c *config.Config) { c.EnableRegistration = false })

		st, body := acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "alice", "password": "pw"})
		acctWantErr(t, "register", st, body, 403, "M_FORBIDDEN")
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "alice", "auth": map[string]any{"type": "m.login.dummy"}})
		acctWantErr(t, "register with auth", st, body, 403, "M_FORBIDDEN")
		st, body = acctReq(t, s, "GET", "/v3/register/available?username=alice", "", nil)
		acctWantErr(t, "available", st, body, 403, "M_FORBIDDEN")
		st, body = acctReq(t, s, "GET", "/v1/register/m.login.registration_token/validity?token=abc", "", nil)
		acctWantErr(t, "token validity", st, body, 403, "M_FORBIDDEN")
	})
}

func TestRegistrationToken(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine, func(c *config.Config) { c.RegistrationRequiresToken = true })
		ctx := context.Background()
		one := int64(1)
		if _, err := s.Users.CreateRegistrationToken(ctx, "single-use", &one, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Users.CreateRegistrationToken(ctx, "stale", nil, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		tokenFlows := [][]string{{"m.login.registration_token"}}
		tokenAuth := func(sess, token string) map[string]any {
			return map[string]any{"type": "m.login.registration_token", "token": token, "session": sess}
		}
		validity := func(token string) any {
			t.Helper()
			st, body := acctReq(t, s, "GET", "/v1/register/m.login.registration_token/validity?token="+url.QueryEscape(token), "", nil)
			if st != 200 {
				t.Fatalf("validity(%s): %d %v", token, st, body)
			}
			return body["valid"]
		}

		if v := validity("single-use"); v != true {
			t.Errorf("validity(single-use) = %v, want true", v)
		}
		for _, tok := range []string{"stale", "unknown", "not a token"} {
			if v := validity(tok); v != false {
				t.Errorf("validity(%q) = %v, want false", tok, v)
			}
		}
		st, body := acctReq(t, s, "GET", "/v1/register/m.login.registration_token/validity", "", nil)
		acctWantErr(t, "validity without token", st, body, 400, "M_MISSING_PARAM")

		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "alice", "password": "pw"})
		sess := acctWantUIA(t, "register", st, body, tokenFlows, "")

		// m.login.dummy is not offered.
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "alice", "password": "pw", "auth": dummyAuth(sess)})
		acctWantUIA(t, "dummy stage", st, body, tokenFlows, "M_UNRECOGNIZED")
		// Wrong and expired tokens fail the stage and keep the session.
		for _, tok := range []string{"wrong", "stale"} {
			st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "alice", "password": "pw", "auth": tokenAuth(sess, tok)})
			if got := acctWantUIA(t, "token "+tok, st, body, tokenFlows, "M_UNAUTHORIZED"); got != sess {
				t.Errorf("token %s: session changed from %s to %s", tok, sess, got)
			}
		}
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "alice", "password": "pw", "auth": tokenAuth(sess, "single-use")})
		if st != 200 || body["user_id"] != "@alice:localhost" {
			t.Fatalf("register with a good token: %d %v", st, body)
		}
		s.Login("@alice:localhost", "pw")

		// Its one use is spent.
		if v := validity("single-use"); v != false {
			t.Errorf("validity(single-use) after use = %v, want false", v)
		}
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "bob"})
		sess = acctWantUIA(t, "register bob", st, body, tokenFlows, "")
		st, body = acctReq(t, s, "POST", "/v3/register", "", map[string]any{"username": "bob", "auth": tokenAuth(sess, "single-use")})
		acctWantUIA(t, "spent token", st, body, tokenFlows, "M_UNAUTHORIZED")
		if st, body := acctReq(t, s, "GET", "/v3/register/available?username=bob", "", nil); st != 200 {
			t.Errorf("bob was registered with a spent token: %d %v", st, body)
		}
	})
}

func TestLogin(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		ctx := context.Background()
		s.Register("alice", "pw-alice")

		flows, err := s.Anonymous().GetLoginFlows(ctx)
		if err != nil || len(flows.Flows) != 1 || flows.Flows[0].Type != mautrix.AuthTypePassword {
			t.Errorf("GetLoginFlows = %+v, %v", flows, err)
		}

		for _, user := range []string{"alice", "@alice:localhost", "ALICE", "@Alice:localhost"} {
			t.Run("identifier "+user, func(t *testing.T) {
				resp, err := s.Anonymous().Login(ctx, &mautrix.ReqLogin{
					Type:       mautrix.AuthTypePassword,
					Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
					Password:   "pw-alice",
				})
				if err != nil || resp.UserID != "@alice:localhost" || resp.AccessToken == "" || resp.DeviceID == "" {
					t.Errorf("Login(%s) = %+v, %v", user, resp, err)
				}
			})
		}
		st, body := acctReq(t, s, "POST", "/v3/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "pw-alice"})
		if st != 200 || body["user_id"] != "@alice:localhost" || body["home_server"] != "localhost" {
			t.Errorf("login with the deprecated user field: %d %v", st, body)
		}

		ident := map[string]any{"type": "m.id.user", "user": "alice"}
		tests := []struct {
			name       string
			body       any
			wantStatus int
			wantCode   string
		}{
			{"wrong password", map[string]any{"type": "m.login.password", "identifier": ident, "password": "nope"}, 403, "M_FORBIDDEN"},
			{"unknown user", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "nobody"}, "password": "pw-alice"}, 403, "M_FORBIDDEN"},
			{"remote user", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "@alice:elsewhere.example"}, "password": "pw-alice"}, 403, "M_FORBIDDEN"},
			{"third-party identifier", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"}, "password": "x"}, 403, "M_FORBIDDEN"},
			{"unsupported type", map[string]any{"type": "m.login.token", "token": "abc"}, 400, "M_UNKNOWN"},
			{"unknown identifier type", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.carrier_pigeon"}, "password": "x"}, 400, "M_UNKNOWN"},
			{"missing type", map[string]any{"identifier": ident, "password": "pw-alice"}, 400, "M_MISSING_PARAM"},
			{"missing password", map[string]any{"type": "m.login.password", "identifier": ident}, 400, "M_MISSING_PARAM"},
			{"missing user", map[string]any{"type": "m.login.password", "password": "pw-alice"}, 400, "M_MISSING_PARAM"},
			{"malformed JSON", `{"type": "m.login.password",`, 400, "M_NOT_JSON"},
			{"password of the wrong type", `{"type": "m.login.password", "user": "alice", "password": 1234}`, 400, "M_BAD_JSON"},
			{"identifier of the wrong type", `{"type": "m.login.password", "identifier": "alice", "password": "pw-alice"}`, 400, "M_BAD_JSON"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st, body := acctReq(t, s, "POST", "/v3/login", "", tt.body)
				acctWantErr(t, tt.name, st, body, tt.wantStatus, tt.wantCode)
			})
		}

		t.Run("device reuse", func(t *testing.T) {
			login := func(name string) *mautrix.RespLogin {
				t.Helper()
				resp, err := s.Anonymous().Login(ctx, &mautrix.ReqLogin{
					Type:       mautrix.AuthTypePassword,
					Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
					Password:   "pw-alice", DeviceID: "REUSED", InitialDeviceDisplayName: name,
				})
				if err != nil || resp.DeviceID != "REUSED" {
					t.Fatalf("login on REUSED = %+v, %v", resp, err)
				}
				return resp
			}
			first := login("First name")
			second := login("Second name")
			old, _ := mautrix.NewClient(s.URL, first.UserID, first.AccessToken)
			_, err := old.Whoami(ctx)
			wantMatrixErr(t, "replaced token", err, 401, "M_UNKNOWN_TOKEN")
			cur, _ := mautrix.NewClient(s.URL, second.UserID, second.AccessToken)
			dev, err := cur.GetDeviceInfo(ctx, "REUSED")
			if err != nil || dev.DisplayName != "First name" {
				t.Errorf("reused device = %+v, %v; want the first display name kept", dev, err)
			}
		})
	})
}

func TestAccessTokens(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		ctx := context.Background()
		alice := s.Register("alice", "pw")

		st, body := acctReq(t, s, "GET", "/v3/account/whoami", alice.AccessToken, nil)
		if st != 200 || body["user_id"] != "@alice:localhost" || body["device_id"] != alice.DeviceID.String() || body["is_guest"] != false {
			t.Errorf("whoami: %d %v", st, body)
		}
		st, body = acctReq(t, s, "GET", "/v3/account/whoami", "", nil)
		acctWantErr(t, "no token", st, body, 401, "M_MISSING_TOKEN")
		st, body = acctReq(t, s, "GET", "/v3/account/whoami", "not-a-token", nil)
		acctWantErr(t, "unknown token", st, body, 401, "M_UNKNOWN_TOKEN")
		st, body = acctReq(t, s, "GET", "/v3/account/whoami?access_token="+alice.AccessToken, "", nil)
		if st != 200 || body["user_id"] != "@alice:localhost" {
			t.Errorf("whoami with the query token: %d %v", st, body)
		}

		// logout ends only the calling device.
		other := s.Login("@alice:localhost", "pw")
		if _, err := other.Logout(ctx); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		_, err := other.Whoami(ctx)
		wantMatrixErr(t, "after logout", err, 401, "M_UNKNOWN_TOKEN")
		if _, err := alice.Whoami(ctx); err != nil {
			t.Errorf("logout ended another device: %v", err)
		}
		devs, err := alice.GetDevicesInfo(ctx)
		if err != nil || len(devs.Devices) != 1 {
			t.Errorf("devices after logout = %+v, %v; want 1", devs, err)
		}

		// logout/all ends every device.
		third := s.Login("@alice:localhost", "pw")
		if _, err := alice.LogoutAll(ctx); err != nil {
			t.Fatalf("LogoutAll: %v", err)
		}
		for _, c := range []*mautrix.Client{alice, third} {
			_, err := c.Whoami(ctx)
			wantMatrixErr(t, "after logout/all", err, 401, "M_UNKNOWN_TOKEN")
		}
		// The account still works.
		s.Login("@alice:localhost", "pw")
	})
}
