package homeserver_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

func TestAdminFromEnvironmentIsIdempotent(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine, func(c *config.Config) {
			c.AdminUser, c.AdminPassword = "@boss:localhost", "first password"
		})
		acct, err := hs.Users.Get(ctx, "@boss:localhost")
		if err != nil || !acct.IsAdmin {
			t.Fatalf("admin = %+v, %v", acct, err)
		}
		hs.Login("@boss:localhost", "first password")

		// A restart with another password neither fails nor changes it.
		hs.Config.AdminPassword = "second password"
		hs.Restart()
		hs.Login("@boss:localhost", "first password")
	})
}

func TestWellKnownAndForwardedHeaders(t *testing.T) {
	hs := mxtest.Start(t, "sqlite", func(c *config.Config) {
		c.PublicBaseURL = "https://matrix.example.org/"
		c.Federation.WellKnownServer = "matrix.example.org:443"
	})
	var server map[string]string
	if code := getJSON(t, hs.URL+"/.well-known/matrix/server", &server); code != 200 || server["m.server"] != "matrix.example.org:443" {
		t.Fatalf("/.well-known/matrix/server = %d %v", code, server)
	}
	var client map[string]map[string]string
	if code := getJSON(t, hs.URL+"/.well-known/matrix/client", &client); code != 200 || client["m.homeserver"]["base_url"] != "https://matrix.example.org" {
		t.Fatalf("/.well-known/matrix/client = %d %v", code, client)
	}
}

// Behind a proxy every request comes from the proxy's address; with
// x_forwarded the per-IP rate limit applies to the forwarded client.
func TestForwardedForRateLimit(t *testing.T) {
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprintf("x_forwarded=%v", trust), func(t *testing.T) {
			hs := mxtest.Start(t, "sqlite", func(c *config.Config) {
				c.XForwarded = trust
				c.RateLimit = config.RateLimit{Enabled: true, PerSecond: 0.001, Burst: 1}
			})
			status := func(client string) int {
				req, _ := http.NewRequest(http.MethodGet, hs.URL+"/_matrix/client/v3/register/available?username=x", nil)
				req.Header.Set("X-Forwarded-For", client)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			first, other := status("203.0.113.1"), status("203.0.113.2")
			if first != 200 {
				t.Fatalf("first request = %d", first)
			}
			if want := map[bool]int{false: 429, true: 200}[trust]; other != want {
				t.Fatalf("request from another forwarded client = %d, want %d", other, want)
			}
			if trust && status("203.0.113.1") != 429 {
				t.Fatal("the same forwarded client was not limited")
			}
		})
	}
}
