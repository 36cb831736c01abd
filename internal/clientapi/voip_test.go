package clientapi_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestTurnServer checks GET /voip/turnServer unconfigured ({}), with a
// shared secret (credentials a coturn use-auth-secret server accepts,
// checked with an HMAC computed here) and with static credentials.
func TestTurnServer(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		uris := []string{"turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"}

		plain := mxtest.Start(t, engine)
		st, body := acctReq(t, plain, "GET", "/v3/voip/turnServer", plain.Client("tn").AccessToken, nil)
		if st != 200 || len(body) != 0 {
			t.Errorf("unconfigured: %d %v, want 200 {}", st, body)
		}
		st, body = acctReq(t, plain, "GET", "/v3/voip/turnServer", "", nil)
		acctWantErr(t, "without token", st, body, 401, "M_MISSING_TOKEN")

		const secret = "coturn-static-auth-secret"
		s := mxtest.Start(t, engine, func(c *config.Config) {
			c.TURN.URIs = uris
			c.TURN.SharedSecret = secret
			c.TURN.UserLifetime = config.Duration(2 * time.Hour)
		})
		cli := s.Client("tc")
		before := time.Now()
		resp, err := cli.TurnServer(ctx)
		if err != nil {
			t.Fatalf("turnServer: %v", err)
		}
		if !slices.Equal(resp.URIs, uris) || resp.TTL != 7200 {
			t.Errorf("uris %v ttl %d, want %v 7200", resp.URIs, resp.TTL, uris)
		}
		expiry, user, ok := strings.Cut(resp.Username, ":")
		if !ok || user != cli.UserID.String() {
			t.Fatalf("username %q, want <expiry>:%s", resp.Username, cli.UserID)
		}
		exp, err := strconv.ParseInt(expiry, 10, 64)
		if err != nil || exp < before.Add(2*time.Hour).Unix()-1 || exp > time.Now().Add(2*time.Hour).Unix()+1 {
			t.Errorf("expiry %q, want about now+2h", expiry)
		}
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write([]byte(resp.Username))
		if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); resp.Password != want {
			t.Errorf("password %q, want HMAC-SHA1 %q", resp.Password, want)
		}

		static := mxtest.Start(t, engine, func(c *config.Config) {
			c.TURN.URIs = uris[:1]
			c.TURN.Username, c.TURN.Password = "turnuser", "turnpass"
		})
		resp, err = static.Client("ts").TurnServer(ctx)
		if err != nil {
			t.Fatalf("static turnServer: %v", err)
		}
		if resp.Username != "turnuser" || resp.Password != "turnpass" || resp.TTL != 3600 || !slices.Equal(resp.URIs, uris[:1]) {
			t.Errorf("static: %+v", resp)
		}
	})
}
