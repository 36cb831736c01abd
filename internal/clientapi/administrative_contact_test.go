package clientapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestThreepids checks the 3PID endpoints of a server without e-mail, SMS
// or identity server: the list is empty, requestToken bodies are validated
// then refused with M_THREEPID_MEDIUM_NOT_SUPPORTED, and deletes succeed
// with "no-support".
func TestThreepids(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		s := mxtest.Start(t, engine)
		cli := s.Client("tp")

		var list struct {
			Threepids []any `json:"threepids"`
		}
		if _, err := cli.MakeRequest(ctx, http.MethodGet, cli.BuildClientURL("v3", "account", "3pid"), nil, &list); err != nil {
			t.Fatalf("GET /account/3pid: %v", err)
		}
		if list.Threepids == nil || len(list.Threepids) != 0 {
			t.Errorf("threepids = %v, want []", list.Threepids)
		}
		_, err := s.Anonymous().MakeRequest(ctx, http.MethodGet, cli.BuildClientURL("v3", "account", "3pid"), nil, nil)
		wantMatrixErr(t, "GET /account/3pid without token", err, 401, "M_MISSING_TOKEN")

		email := map[string]any{"client_secret": "s3cret", "email": "a@example.org", "send_attempt": 1}
		msisdn := map[string]any{"client_secret": "s3cret", "country": "GB", "phone_number": "07700900000", "send_attempt": 1}
		for _, path := range []string{"/v3/account/3pid/email/requestToken", "/v3/register/email/requestToken", "/r0/account/password/email/requestToken"} {
			st, body := acctReq(t, s, "POST", path, "", email)
			acctWantErr(t, path, st, body, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
			st, body = acctReq(t, s, "POST", path, "", map[string]any{"client_secret": "s3cret", "send_attempt": 1})
			acctWantErr(t, path+" without email", st, body, 400, "M_MISSING_PARAM")
			st, body = acctReq(t, s, "POST", path, "", map[string]any{"client_secret": "bad secret!", "email": "a@example.org", "send_attempt": 1})
			acctWantErr(t, path+" bad client_secret", st, body, 400, "M_INVALID_PARAM")
			st, body = acctReq(t, s, "POST", path, "", map[string]any{"client_secret": "s3cret", "email": "a@example.org", "send_attempt": "1"})
			acctWantErr(t, path+" string send_attempt", st, body, 400, "M_BAD_JSON")
			st, body = acctReq(t, s, "POST", path, "", "{nope")
			acctWantErr(t, path+" not JSON", st, body, 400, "M_NOT_JSON")
		}
		for _, path := range []string{"/v3/account/3pid/msisdn/requestToken", "/v3/register/msisdn/requestToken", "/v3/account/password/msisdn/requestToken"} {
			st, body := acctReq(t, s, "POST", path, "", msisdn)
			acctWantErr(t, path, st, body, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
			st, body = acctReq(t, s, "POST", path, "", map[string]any{"client_secret": "s3cret", "country": "GB", "send_attempt": 1})
			acctWantErr(t, path+" without phone_number", st, body, 400, "M_MISSING_PARAM")
		}

		tok := cli.AccessToken
		st, body := acctReq(t, s, "POST", "/v3/account/3pid/delete", tok, map[string]any{"medium": "email", "address": "nobody@example.org"})
		if st != 200 || body["id_server_unbind_result"] != "no-support" {
			t.Errorf("delete unknown 3pid: %d %v", st, body)
		}
		st, body = acctReq(t, s, "POST", "/v3/account/3pid/unbind", tok, map[string]any{"medium": "msisdn", "address": "447700900000"})
		if st != 200 || body["id_server_unbind_result"] != "no-support" {
			t.Errorf("unbind: %d %v", st, body)
		}
		st, body = acctReq(t, s, "POST", "/v3/account/3pid/delete", tok, map[string]any{"medium": "fax", "address": "1"})
		acctWantErr(t, "delete bad medium", st, body, 400, "M_INVALID_PARAM")
		st, body = acctReq(t, s, "POST", "/v3/account/3pid/unbind", tok, map[string]any{"medium": "email"})
		acctWantErr(t, "unbind without address", st, body, 400, "M_MISSING_PARAM")

		st, body = acctReq(t, s, "POST", "/v3/account/3pid/bind", tok, map[string]any{"client_secret": "s3cret", "sid": "x", "id_server": "id.example.org", "id_access_token": "t"})
		// Proxied to id.example.org, which cannot be reached from here.
		acctWantErr(t, "bind on an unreachable identity server", st, body, 400, "M_UNKNOWN")
		st, body = acctReq(t, s, "POST", "/v3/account/3pid/bind", tok, map[string]any{"client_secret": "s3cret", "sid": "x"})
		acctWantErr(t, "bind without id_server", st, body, 400, "M_MISSING_PARAM")

		st, body = acctReq(t, s, "POST", "/v3/account/3pid/add", tok, map[string]any{"client_secret": "s3cret"})
		acctWantErr(t, "add without sid", st, body, 400, "M_MISSING_PARAM")
		st, body = acctReq(t, s, "POST", "/v3/account/3pid/add", tok, map[string]any{"client_secret": "s3cret", "sid": "x"})
		sess := acctWantUIA(t, "add", st, body, [][]string{{"m.login.password"}}, "")
		st, body = acctReq(t, s, "POST", "/v3/account/3pid/add", tok, map[string]any{
			"client_secret": "s3cret", "sid": "x", "auth": passwordAuth(sess, cli.UserID, "password-"+cli.UserID.Localpart()),
		})
		acctWantErr(t, "add after auth", st, body, 400, "M_THREEPID_AUTH_FAILED")

		st, body = acctReq(t, s, "POST", "/v3/account/3pid", tok, map[string]any{})
		acctWantErr(t, "post 3pid without creds", st, body, 400, "M_MISSING_PARAM")
		st, body = acctReq(t, s, "POST", "/v3/account/3pid", tok, map[string]any{"three_pid_creds": map[string]any{"client_secret": "s3cret", "sid": "x"}})
		acctWantErr(t, "post 3pid", st, body, 400, "M_THREEPID_AUTH_FAILED")
	})
}
