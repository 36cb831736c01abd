package clientapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// userinfo calls the federation OpenID userinfo endpoint without any
// X-Matrix authentication, as an integration manager does.
func userinfo(t *testing.T, s *mxtest.Server, token string) (int, map[string]any) {
	t.Helper()
	u := s.URL + "/_matrix/federation/v1/openid/userinfo"
	if token != "" {
		u += "?access_token=" + url.QueryEscape(token)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("userinfo: status %d, body is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// TestOpenIDToken checks POST /user/{userId}/openid/request_token and the
// exchange of its token at /_matrix/federation/v1/openid/userinfo: the
// token names its user, another user's path is 403, and unknown, expired
// and deactivated users' tokens are 401 M_UNKNOWN_TOKEN.
func TestOpenIDToken(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		s := mxtest.Start(t, engine)
		alice, bob := s.Client("oa"), s.Client("ob")

		tok, err := alice.RequestOpenIDToken(ctx)
		if err != nil {
			t.Fatalf("request_token: %v", err)
		}
		if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.MatrixServerName != "localhost" || tok.ExpiresIn != 3600 {
			t.Errorf("request_token: %+v", tok)
		}
		st, body := userinfo(t, s, tok.AccessToken)
		if st != 200 || body["sub"] != alice.UserID.String() {
			t.Errorf("userinfo: %d %v, want sub %s", st, body, alice.UserID)
		}
		tok2, err := alice.RequestOpenIDToken(ctx)
		if err != nil || tok2.AccessToken == tok.AccessToken {
			t.Errorf("second token %v, err %v: want a fresh one", tok2, err)
		}

		st, body = acctReq(t, s, "POST", "/v3/user/"+url.PathEscape(alice.UserID.String())+"/openid/request_token", bob.AccessToken, map[string]any{})
		acctWantErr(t, "token for another user", st, body, 403, "M_FORBIDDEN")
		st, body = acctReq(t, s, "POST", "/v3/user/"+url.PathEscape(bob.UserID.String())+"/openid/request_token", "", map[string]any{})
		acctWantErr(t, "without access token", st, body, 401, "M_MISSING_TOKEN")
		st, body = acctReq(t, s, "POST", "/v3/user/"+url.PathEscape(bob.UserID.String())+"/openid/request_token", bob.AccessToken, "[1]")
		acctWantErr(t, "array body", st, body, 400, "M_BAD_JSON")

		st, body = userinfo(t, s, "not-a-token")
		acctWantErr(t, "unknown token", st, body, 401, "M_UNKNOWN_TOKEN")
		st, body = userinfo(t, s, "")
		acctWantErr(t, "no token", st, body, 401, "M_MISSING_TOKEN")
		// An access token is not an OpenID token.
		st, body = userinfo(t, s, alice.AccessToken)
		acctWantErr(t, "access token", st, body, 401, "M_UNKNOWN_TOKEN")

		// Expire the first token: the clock is not injectable over HTTP.
		if _, err := s.DB().ExecContext(ctx, `UPDATE openid_tokens SET expires_ts = 1 WHERE user_id = $1`, alice.UserID.String()); err != nil {
			t.Fatal(err)
		}
		st, body = userinfo(t, s, tok.AccessToken)
		acctWantErr(t, "expired token", st, body, 401, "M_UNKNOWN_TOKEN")

		btok, err := bob.RequestOpenIDToken(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st, body = acctReq(t, s, "POST", "/v3/account/deactivate", bob.AccessToken, map[string]any{
			"auth": passwordAuth("", bob.UserID, "password-"+bob.UserID.Localpart()),
		})
		if st != 200 {
			t.Fatalf("deactivate: %d %v", st, body)
		}
		st, body = userinfo(t, s, btok.AccessToken)
		acctWantErr(t, "deactivated user's token", st, body, 401, "M_UNKNOWN_TOKEN")
	})
}
