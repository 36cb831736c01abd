package homeserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestPushEndToEnd: a user sets a pusher pointing at a push gateway (a
// real HTTP server in the test), another user sends a message in their
// room, and the gateway receives the notification. It needs rule
// evaluation wired to Server.Pushers (the push.Sink).
func TestPushEndToEnd(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		var mu sync.Mutex
		var got []map[string]any
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, _ := io.ReadAll(r.Body)
			var body struct {
				Notification map[string]any `json:"notification"`
			}
			_ = json.Unmarshal(raw, &body)
			mu.Lock()
			got = append(got, body.Notification)
			mu.Unlock()
			_, _ = io.WriteString(w, `{"rejected":[]}`)
		}))
		defer gw.Close()

		s := mxtest.Start(t, engine, func(c *config.Config) { c.Push.AllowPrivate = true })
		alice, bob := s.Client("alice"), s.Client("bob")
		_, err := alice.MakeRequest(ctx, http.MethodPost, alice.BuildClientURL("v3", "pushers", "set"), map[string]any{
			"kind": "http", "app_id": "org.example.app", "pushkey": "alice-phone",
			"app_display_name": "App", "device_display_name": "Phone", "lang": "en",
			"data": map[string]any{"url": gw.URL + "/_matrix/push/v1/notify"},
		}, nil)
		if err != nil {
			t.Fatalf("setting a pusher: %v", err)
		}
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}, IsDirect: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		sent, err := bob.SendText(ctx, room.RoomID, "ping")
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			mu.Lock()
			var found map[string]any
			for _, n := range got {
				if n["event_id"] == sent.EventID.String() {
					found = n
				}
			}
			mu.Unlock()
			if found != nil {
				if found["room_id"] != room.RoomID.String() || found["sender"] != bob.UserID.String() || found["type"] != "m.room.message" {
					t.Errorf("notification = %v", found)
				}
				if c, _ := found["content"].(map[string]any); c["body"] != "ping" {
					t.Errorf("content = %v", found["content"])
				}
				devs, _ := found["devices"].([]any)
				if len(devs) != 1 || devs[0].(map[string]any)["pushkey"] != "alice-phone" {
					t.Errorf("devices = %v", found["devices"])
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the gateway never got %s; got %v", sent.EventID, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
