package homeserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestAutoJoinRooms: the first user to register creates the configured
// room (public, with its alias); later users join it.
func TestAutoJoinRooms(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine, func(c *config.Config) { c.AutoJoinRooms = []string{"#welcome:localhost"} })
		first, second := srv.Client("first"), srv.Client("second")
		roomID, _, err := srv.Rooms.ResolveAlias(ctx, "#welcome:localhost")
		if err != nil {
			t.Fatalf("the auto-join room was not created: %v", err)
		}
		for _, c := range []*mautrix.Client{first, second} {
			joined, err := c.JoinedRooms(ctx)
			if err != nil || !slices.Contains(joined.JoinedRooms, roomID) {
				t.Errorf("%s joined %v (%v), want %s", c.UserID, joined, err, roomID)
			}
		}
		dir, err := second.PublicRooms(ctx, &mautrix.ReqPublicRooms{})
		if err != nil || len(dir.Chunk) != 1 || dir.Chunk[0].RoomID != roomID || dir.Chunk[0].NumJoinedMembers != 2 {
			t.Errorf("directory = %+v (%v), want the welcome room with 2 members", dir, err)
		}
	})
}

// TestRecaptchaRegistration: with reCAPTCHA on, registration needs a
// response the siteverify endpoint accepts.
func TestRecaptchaRegistration(t *testing.T) {
	var secrets []string
	verify := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		secrets = append(secrets, r.PostForm.Get("secret"))
		_ = json.NewEncoder(w).Encode(map[string]bool{"success": r.PostForm.Get("response") == "solved"})
	}))
	defer verify.Close()
	srv := mxtest.Start(t, "sqlite", func(c *config.Config) {
		c.Recaptcha = config.Recaptcha{Enabled: true, PublicKey: "pub-key", PrivateKey: "priv-key", SiteverifyAPI: verify.URL}
	})
	post := func(body map[string]any) (int, map[string]any) {
		raw, _ := json.Marshal(body)
		resp, err := http.Post(srv.URL+"/_matrix/client/v3/register", "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	req := map[string]any{"username": "captcha", "password": "a long password"}
	status, uia := post(req)
	flows, _ := json.Marshal(uia["flows"])
	params, _ := json.Marshal(uia["params"])
	if status != 401 || !bytes.Contains(flows, []byte("m.login.recaptcha")) || !bytes.Contains(params, []byte(`"public_key":"pub-key"`)) {
		t.Fatalf("first answer %d flows %s params %s", status, flows, params)
	}
	session := uia["session"]
	req["auth"] = map[string]any{"type": "m.login.recaptcha", "response": "wrong", "session": session}
	if status, out := post(req); status != 401 || out["errcode"] != "M_CAPTCHA_INVALID" {
		t.Fatalf("a wrong captcha: %d %v", status, out)
	}
	req["auth"] = map[string]any{"type": "m.login.recaptcha", "response": "solved", "session": session}
	status, out := post(req)
	if status != 200 || id.UserID(out["user_id"].(string)) != "@captcha:localhost" {
		t.Fatalf("a solved captcha: %d %v", status, out)
	}
	if len(secrets) != 2 || secrets[0] != "priv-key" {
		t.Errorf("siteverify got secrets %v, want the private key twice", secrets)
	}
}
