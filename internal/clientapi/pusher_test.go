package clientapi_test

// End-to-end tests of the pusher endpoints (pusher.yaml): setting,
// listing and deleting pushers, every validation error, and pushers going
// with their device.

import (
	"context"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

const gatewayURL = "https://push.example.org/_matrix/push/v1/notify"

// httpPusher is a valid /pushers/set body for an http pusher.
func httpPusher(appID, pushkey string) map[string]any {
	return map[string]any{
		"kind": "http", "app_id": appID, "pushkey": pushkey,
		"app_display_name": "App", "device_display_name": "Phone", "lang": "en",
		"data": map[string]any{"url": gatewayURL, "format": "event_id_only", "custom": "x"},
	}
}

// pusherKeys returns the app_id/pushkey of the user's pushers.
func pusherKeys(t *testing.T, s *mxtest.Server, cli *mautrix.Client) []string {
	t.Helper()
	st, body := acctReq(t, s, "GET", "/v3/pushers", cli.AccessToken, nil)
	if st != 200 {
		t.Fatalf("GET /pushers: %d %v", st, body)
	}
	list, ok := body["pushers"].([]any)
	if !ok {
		t.Fatalf("GET /pushers: no pushers array in %v", body)
	}
	out := []string{}
	for _, p := range list {
		m := p.(map[string]any)
		out = append(out, m["app_id"].(string)+"/"+m["pushkey"].(string))
	}
	slices.Sort(out)
	return out
}

func setPusher(t *testing.T, s *mxtest.Server, cli *mautrix.Client, body any) {
	t.Helper()
	if st, resp := acctReq(t, s, "POST", "/v3/pushers/set", cli.AccessToken, body); st != 200 {
		t.Fatalf("POST /pushers/set %v: %d %v", body, st, resp)
	}
}

func wantPushers(t *testing.T, what string, s *mxtest.Server, cli *mautrix.Client, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := pusherKeys(t, s, cli); !slices.Equal(got, want) {
		t.Errorf("%s: pushers = %v, want %v", what, got, want)
	}
}

func TestPushersSetGetDelete(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		alice := s.Client("alice")
		bob := s.Client("bob")
		wantPushers(t, "new user", s, alice)

		setPusher(t, s, alice, httpPusher("org.example.app", "key1"))
		st, body := acctReq(t, s, "GET", "/v3/pushers", alice.AccessToken, nil)
		if st != 200 {
			t.Fatalf("GET /pushers: %d %v", st, body)
		}
		got := body["pushers"].([]any)[0].(map[string]any)
		want := map[string]any{"kind": "http", "app_id": "org.example.app", "pushkey": "key1", "app_display_name": "App",
			"device_display_name": "Phone", "lang": "en", "profile_tag": ""}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("pusher %s = %v, want %v", k, got[k], v)
			}
		}
		data, _ := got["data"].(map[string]any)
		if data["url"] != gatewayURL || data["format"] != "event_id_only" || data["custom"] != "x" {
			t.Errorf("pusher data = %v", data)
		}
		// mautrix reads it too.
		if resp, err := alice.GetPushers(context.Background()); err != nil || len(resp.Pushers) != 1 || resp.Pushers[0].PushKey != "key1" {
			t.Errorf("mautrix GetPushers = %+v, %v", resp, err)
		}

		// The same app_id and pushkey updates the pusher.
		upd := httpPusher("org.example.app", "key1")
		upd["device_display_name"] = "Tablet"
		setPusher(t, s, alice, upd)
		_, body = acctReq(t, s, "GET", "/v3/pushers", alice.AccessToken, nil)
		if list := body["pushers"].([]any); len(list) != 1 || list[0].(map[string]any)["device_display_name"] != "Tablet" {
			t.Errorf("after update: %v", list)
		}
		setPusher(t, s, alice, httpPusher("org.example.app", "key2"))
		// Plain http is accepted, as Synapse does.
		plain := httpPusher("org.example.other", "key1")
		plain["data"] = map[string]any{"url": "http://10.0.0.1:5000/_matrix/push/v1/notify"}
		setPusher(t, s, alice, plain)
		wantPushers(t, "three pushers", s, alice, "org.example.app/key1", "org.example.app/key2", "org.example.other/key1")

		// append false (the default) takes the pushkey from other users,
		// append true shares it.
		shared := httpPusher("org.example.app", "key2")
		shared["append"] = true
		setPusher(t, s, bob, shared)
		wantPushers(t, "append true: alice keeps hers", s, alice, "org.example.app/key1", "org.example.app/key2", "org.example.other/key1")
		setPusher(t, s, bob, httpPusher("org.example.app", "key1"))
		wantPushers(t, "append false: alice loses key1", s, alice, "org.example.app/key2", "org.example.other/key1")
		wantPushers(t, "bob", s, bob, "org.example.app/key1", "org.example.app/key2")

		// kind null deletes (only the caller's).
		setPusher(t, s, alice, map[string]any{"kind": nil, "app_id": "org.example.app", "pushkey": "key2"})
		wantPushers(t, "after delete", s, alice, "org.example.other/key1")
		wantPushers(t, "bob after alice's delete", s, bob, "org.example.app/key1", "org.example.app/key2")
		// Deleting what does not exist succeeds.
		setPusher(t, s, alice, map[string]any{"kind": nil, "app_id": "org.example.app", "pushkey": "nope"})

		// Pushers are stored.
		s.Restart()
		wantPushers(t, "after restart", s, alice, "org.example.other/key1")
		wantPushers(t, "bob after restart", s, bob, "org.example.app/key1", "org.example.app/key2")
	})
}

func TestPushersSetErrors(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		alice := s.Client("alice")
		with := func(k string, v any) map[string]any {
			p := httpPusher("org.example.app", "key")
			if v == nil {
				delete(p, k)
			} else {
				p[k] = v
			}
			return p
		}
		withURL := func(u any) map[string]any {
			return with("data", map[string]any{"url": u})
		}
		for _, tc := range []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"not JSON", `{"kind":`, 400, "M_NOT_JSON"},
			{"not an object", `[1]`, 400, "M_BAD_JSON"},
			{"no kind", with("kind", nil), 400, "M_MISSING_PARAM"},
			{"no app_id", with("app_id", nil), 400, "M_MISSING_PARAM"},
			{"no pushkey", with("pushkey", nil), 400, "M_MISSING_PARAM"},
			{"delete without pushkey", map[string]any{"kind": nil, "app_id": "a"}, 400, "M_MISSING_PARAM"},
			{"no app_display_name", with("app_display_name", nil), 400, "M_MISSING_PARAM"},
			{"no device_display_name", with("device_display_name", nil), 400, "M_MISSING_PARAM"},
			{"no lang", with("lang", nil), 400, "M_MISSING_PARAM"},
			{"no data", with("data", nil), 400, "M_MISSING_PARAM"},
			{"null data", `{"kind":"http","app_id":"a","pushkey":"k","app_display_name":"A","device_display_name":"D","lang":"en","data":null}`, 400, "M_MISSING_PARAM"},
			{"no url", with("data", map[string]any{"format": "event_id_only"}), 400, "M_MISSING_PARAM"},
			{"kind a number", with("kind", 3), 400, "M_BAD_JSON"},
			{"app_id a number", with("app_id", 3), 400, "M_BAD_JSON"},
			{"pushkey a number", with("pushkey", 3), 400, "M_BAD_JSON"},
			{"lang a number", with("lang", 3), 400, "M_BAD_JSON"},
			{"data a string", with("data", "x"), 400, "M_BAD_JSON"},
			{"data an array", with("data", []any{}), 400, "M_BAD_JSON"},
			{"append a string", with("append", "yes"), 400, "M_BAD_JSON"},
			{"unknown kind", with("kind", "carrier-pigeon"), 400, "M_INVALID_PARAM"},
			{"email without SMTP", with("kind", "email"), 400, "M_UNRECOGNIZED"},
			{"empty app_id", with("app_id", ""), 400, "M_INVALID_PARAM"},
			{"app_id over 64 characters", with("app_id", strings.Repeat("a", 65)), 400, "M_INVALID_PARAM"},
			{"empty pushkey", with("pushkey", ""), 400, "M_INVALID_PARAM"},
			{"pushkey over 512 bytes", with("pushkey", strings.Repeat("k", 513)), 400, "M_INVALID_PARAM"},
			{"url a number", withURL(3), 400, "M_INVALID_PARAM"},
			{"url with another path", withURL("https://push.example.org/notify"), 400, "M_INVALID_PARAM"},
			{"url with a trailing slash", withURL("https://push.example.org/_matrix/push/v1/notify/"), 400, "M_INVALID_PARAM"},
			{"url not absolute", withURL("/_matrix/push/v1/notify"), 400, "M_INVALID_PARAM"},
			{"url of another scheme", withURL("ftp://push.example.org/_matrix/push/v1/notify"), 400, "M_INVALID_PARAM"},
			{"format a number", with("data", map[string]any{"url": gatewayURL, "format": 1}), 400, "M_INVALID_PARAM"},
		} {
			st, body := acctReq(t, s, "POST", "/v3/pushers/set", alice.AccessToken, tc.body)
			acctWantErr(t, tc.name, st, body, tc.status, tc.code)
		}
		st, body := acctReq(t, s, "POST", "/v3/pushers/set", "", httpPusher("a", "k"))
		acctWantErr(t, "no token", st, body, 401, "M_MISSING_TOKEN")
		st, body = acctReq(t, s, "GET", "/v3/pushers", "", nil)
		acctWantErr(t, "list without a token", st, body, 401, "M_MISSING_TOKEN")
		wantPushers(t, "after the errors", s, alice)
	})
}

func TestPushersGoWithTheirDevice(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		ctx := context.Background()
		alice := s.Register("alice", "pw")
		user := id.UserID("@alice:localhost")
		devices := map[string]*mautrix.Client{"main": alice}
		for _, n := range []string{"logout", "delete", "deletemany", "other"} {
			devices[n] = s.Login(user, "pw")
		}
		for n, c := range devices {
			setPusher(t, s, c, httpPusher("org.example.app", n))
		}
		all := []string{"org.example.app/delete", "org.example.app/deletemany", "org.example.app/logout", "org.example.app/main", "org.example.app/other"}
		wantPushers(t, "set from every device", s, alice, all...)

		if _, err := devices["logout"].Logout(ctx); err != nil {
			t.Fatalf("logout: %v", err)
		}
		wantPushers(t, "after /logout", s, alice, slices.Delete(slices.Clone(all), 2, 3)...)

		st, body := acctReq(t, s, "DELETE", "/v3/devices/"+devices["delete"].DeviceID.String(), alice.AccessToken,
			map[string]any{"auth": passwordAuth("", user, "pw")})
		if st != 200 {
			t.Fatalf("DELETE /devices: %d %v", st, body)
		}
		wantPushers(t, "after DELETE /devices", s, alice, "org.example.app/deletemany", "org.example.app/main", "org.example.app/other")

		st, body = acctReq(t, s, "POST", "/v3/delete_devices", alice.AccessToken, map[string]any{
			"devices": []string{devices["deletemany"].DeviceID.String()}, "auth": passwordAuth("", user, "pw"),
		})
		if st != 200 {
			t.Fatalf("POST /delete_devices: %d %v", st, body)
		}
		wantPushers(t, "after /delete_devices", s, alice, "org.example.app/main", "org.example.app/other")

		// A password change keeps only the calling device's pushers
		// (with logout_devices, the default), as Synapse.
		st, body = acctReq(t, s, "POST", "/v3/account/password", alice.AccessToken, map[string]any{
			"new_password": "pw2", "logout_devices": false, "auth": passwordAuth("", user, "pw"),
		})
		if st != 200 {
			t.Fatalf("change password without logout: %d %v", st, body)
		}
		wantPushers(t, "logout_devices false", s, alice, "org.example.app/main", "org.example.app/other")
		st, body = acctReq(t, s, "POST", "/v3/account/password", alice.AccessToken, map[string]any{
			"new_password": "pw3", "auth": passwordAuth("", user, "pw2"),
		})
		if st != 200 {
			t.Fatalf("change password: %d %v", st, body)
		}
		wantPushers(t, "after a password change", s, alice, "org.example.app/main")

		// /logout/all takes every pusher; a new login sees none.
		late := s.Login(user, "pw3")
		setPusher(t, s, late, httpPusher("org.example.app", "late"))
		if _, err := alice.LogoutAll(ctx); err != nil {
			t.Fatalf("logout all: %v", err)
		}
		wantPushers(t, "after /logout/all", s, s.Login(user, "pw3"))
	})
}
