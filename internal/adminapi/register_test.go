package adminapi_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

const registerPath = "/_synapse/admin/v1/register"

func call(t *testing.T, s *mxtest.Server, method string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, s.URL+registerPath, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %q", method, registerPath, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func nonce(t *testing.T, s *mxtest.Server) string {
	t.Helper()
	st, body := call(t, s, "GET", nil)
	n, _ := body["nonce"].(string)
	if st != 200 || len(n) < 32 {
		t.Fatalf("GET nonce: %d %v", st, body)
	}
	return n
}

// mac computes the MAC as Synapse's register_new_matrix_user does, written
// out independently of the server's code.
func mac(secret, nonce, user, password string, admin bool, userType string) string {
	m := hmac.New(sha1.New, []byte(secret))
	parts := []string{nonce, user, password, map[bool]string{true: "admin", false: "notadmin"}[admin]}
	if userType != "" {
		parts = append(parts, userType)
	}
	m.Write([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(m.Sum(nil))
}

func wantErr(t *testing.T, what string, st int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if st != wantStatus || body["errcode"] != wantCode {
		t.Errorf("%s: got %d %v, want %d %s", what, st, body, wantStatus, wantCode)
	}
}

func TestSharedSecretRegister(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		secret := s.Config.RegistrationSharedSecret
		ctx := context.Background()

		t.Run("admin", func(t *testing.T) {
			n := nonce(t, s)
			st, body := call(t, s, "POST", map[string]any{
				"nonce": n, "username": "root", "password": "pw-root", "admin": true,
				"displayname": "The Admin", "mac": mac(secret, n, "root", "pw-root", true, ""),
			})
			if st != 200 || body["user_id"] != "@root:localhost" || body["home_server"] != "localhost" ||
				body["access_token"] == nil || body["device_id"] == nil {
				t.Fatalf("register admin: %d %v", st, body)
			}
			cli, _ := mautrix.NewClient(s.URL, "@root:localhost", body["access_token"].(string))
			if who, err := cli.Whoami(ctx); err != nil || who.UserID != "@root:localhost" {
				t.Errorf("whoami = %+v, %v", who, err)
			}
			acct, err := s.Users.Get(ctx, "@root:localhost")
			if err != nil || !acct.IsAdmin || acct.DisplayName != "The Admin" {
				t.Errorf("account = %+v, %v; want admin named The Admin", acct, err)
			}
			s.Login("@root:localhost", "pw-root")
		})

		t.Run("not admin, lowercased, with user_type", func(t *testing.T) {
			n := nonce(t, s)
			st, body := call(t, s, "POST", map[string]any{
				"nonce": n, "username": "Bot", "password": "pw", "admin": false, "user_type": "bot",
				"inhibit_login": true, "mac": mac(secret, n, "Bot", "pw", false, "bot"),
			})
			if st != 200 || body["user_id"] != "@bot:localhost" || body["access_token"] != nil {
				t.Fatalf("register bot: %d %v", st, body)
			}
			if acct, err := s.Users.Get(ctx, "@bot:localhost"); err != nil || acct.IsAdmin {
				t.Errorf("account = %+v, %v; want non-admin", acct, err)
			}
		})

		t.Run("mautrix client", func(t *testing.T) {
			admin := synapseadmin.Client{Client: s.Anonymous()}
			resp, err := admin.SharedSecretRegister(ctx, secret, synapseadmin.ReqSharedSecretRegister{Username: "viamautrix", Password: "pw"})
			if err != nil || resp.UserID != id.UserID("@viamautrix:localhost") {
				t.Fatalf("SharedSecretRegister = %+v, %v", resp, err)
			}
		})

		t.Run("bad mac", func(t *testing.T) {
			n := nonce(t, s)
			st, body := call(t, s, "POST", map[string]any{
				"nonce": n, "username": "mallory", "password": "pw", "admin": true,
				// signed as notadmin, sent as admin
				"mac": mac(secret, n, "mallory", "pw", false, ""),
			})
			wantErr(t, "admin flag not covered by the mac", st, body, 403, "M_FORBIDDEN")
			n = nonce(t, s)
			st, body = call(t, s, "POST", map[string]any{
				"nonce": n, "username": "mallory", "password": "pw", "mac": mac("wrong secret", n, "mallory", "pw", false, ""),
			})
			wantErr(t, "wrong secret", st, body, 403, "M_FORBIDDEN")
			if _, err := s.Users.Get(ctx, "@mallory:localhost"); err == nil {
				t.Error("account created with a bad mac")
			}
		})

		t.Run("nonce reuse", func(t *testing.T) {
			n := nonce(t, s)
			req := map[string]any{"nonce": n, "username": "once", "password": "pw", "mac": mac(secret, n, "once", "pw", false, "")}
			if st, body := call(t, s, "POST", req); st != 200 {
				t.Fatalf("first use: %d %v", st, body)
			}
			req["username"], req["mac"] = "twice", mac(secret, n, "twice", "pw", false, "")
			st, body := call(t, s, "POST", req)
			wantErr(t, "reused nonce", st, body, 400, "M_UNKNOWN")

			// A failed attempt spends the nonce too.
			n = nonce(t, s)
			call(t, s, "POST", map[string]any{"nonce": n, "username": "x", "password": "pw", "mac": "00"})
			st, body = call(t, s, "POST", map[string]any{"nonce": n, "username": "x", "password": "pw", "mac": mac(secret, n, "x", "pw", false, "")})
			wantErr(t, "nonce after a failed attempt", st, body, 400, "M_UNKNOWN")

			st, body = call(t, s, "POST", map[string]any{"nonce": "made-up", "username": "x", "password": "pw", "mac": "00"})
			wantErr(t, "unknown nonce", st, body, 400, "M_UNKNOWN")
		})

		t.Run("bad requests", func(t *testing.T) {
			tests := []struct {
				name       string
				body       func(n string) any
				wantStatus int
				wantCode   string
			}{
				{"no nonce", func(string) any { return map[string]any{"username": "x", "password": "pw", "mac": "00"} }, 400, "M_BAD_JSON"},
				{"no username", func(n string) any { return map[string]any{"nonce": n, "password": "pw", "mac": "00"} }, 400, "M_BAD_JSON"},
				{"no password", func(n string) any { return map[string]any{"nonce": n, "username": "x", "mac": "00"} }, 400, "M_BAD_JSON"},
				{"no mac", func(n string) any { return map[string]any{"nonce": n, "username": "x", "password": "pw"} }, 400, "M_BAD_JSON"},
				{"NUL in username", func(n string) any {
					return map[string]any{"nonce": n, "username": "x\x00y", "password": "pw", "mac": "00"}
				}, 400, "M_BAD_JSON"}, // refused by httpx before the handler sees it
				{"unknown user_type", func(n string) any {
					return map[string]any{"nonce": n, "username": "x", "password": "pw", "user_type": "wizard", "mac": mac(secret, n, "x", "pw", false, "wizard")}
				}, 400, "M_UNKNOWN"},
				{"malformed JSON", func(string) any { return `{"nonce":` }, 400, "M_NOT_JSON"},
				{"admin of the wrong type", func(n string) any { return `{"nonce": "` + n + `", "admin": "yes"}` }, 400, "M_BAD_JSON"},
				{"invalid localpart", func(n string) any {
					return map[string]any{"nonce": n, "username": "no spaces", "password": "pw", "mac": mac(secret, n, "no spaces", "pw", false, "")}
				}, 400, "M_INVALID_USERNAME"},
				{"taken", func(n string) any {
					return map[string]any{"nonce": n, "username": "root", "password": "pw", "mac": mac(secret, n, "root", "pw", false, "")}
				}, 400, "M_USER_IN_USE"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					st, body := call(t, s, "POST", tt.body(nonce(t, s)))
					wantErr(t, tt.name, st, body, tt.wantStatus, tt.wantCode)
				})
			}
		})
	})
}

func TestSharedSecretRegisterDisabled(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine, func(c *config.Config) { c.RegistrationSharedSecret = "" })
		st, body := call(t, s, "GET", nil)
		wantErr(t, "GET", st, body, 400, "M_UNKNOWN")
		// With an empty secret, a mac keyed by "" must not work.
		st, body = call(t, s, "POST", map[string]any{"nonce": "n", "username": "x", "password": "pw", "mac": mac("", "n", "x", "pw", false, "")})
		wantErr(t, "POST", st, body, 400, "M_UNKNOWN")
		if !strings.Contains(body["error"].(string), "not enabled") {
			t.Errorf("error = %q, want it to say registration is not enabled", body["error"])
		}
	})
}
