package homeserver_test

import (
	"context"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

func TestDeactivatedUserLeavesRooms(t *testing.T) {
	ctx := context.Background()
	srv := mxtest.Start(t, "sqlite")
	alice := srv.Client("alice")
	bob := srv.Register("bobdeact", "bob-password")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
		t.Fatal(err)
	}
	url := bob.BuildClientURL("v3", "account", "deactivate")
	_, err = bob.MakeRequest(ctx, "POST", url, map[string]any{}, nil)
	var he mautrix.HTTPError
	if !asHTTPError(err, &he) || he.Response == nil || he.Response.StatusCode != 401 {
		t.Fatalf("first deactivate call: %v, want a 401 UIA challenge", err)
	}
	var uia struct{ Session string }
	_ = json.Unmarshal([]byte(he.ResponseBody), &uia)
	_, err = bob.MakeRequest(ctx, "POST", url, map[string]any{"auth": map[string]any{
		"type": "m.login.password", "session": uia.Session, "password": "bob-password",
		"identifier": map[string]any{"type": "m.id.user", "user": bob.UserID},
	}}, nil)
	if err != nil {
		t.Fatalf("deactivate: %v", err)
	}
	members, err := alice.JoinedMembers(ctx, created.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	if _, still := members.Joined[bob.UserID]; still {
		t.Fatal("deactivated user is still joined")
	}
}
