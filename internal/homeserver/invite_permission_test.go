package homeserver_test

import (
	"context"
	"errors"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// wantMxErr fails unless err is a Matrix error with the status and errcode.
func wantMxErr(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.Response == nil || he.Response.StatusCode != status || he.RespError.ErrCode != code {
		t.Errorf("%s: %v, want %d %s", what, err, status, code)
	}
}

// TestInvitePermission: a user whose m.invite_permission_config blocks
// invites (spec v1.18) is refused as an invitee with 403 M_INVITE_BLOCKED
// by every endpoint that invites, locally and over federation, is left
// out of a new room's invites, and is not shown invites that came before.
func TestInvitePermission(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob, carol := hs[0].Client("alice"), hs[0].Client("bob"), hs[1].Client("carol")

		early, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		block := func(on bool) {
			t.Helper()
			content := map[string]any{}
			if on {
				content["default_action"] = "block"
			}
			if err := bob.SetAccountData(ctx, "m.invite_permission_config", content); err != nil {
				t.Fatal(err)
			}
		}
		block(true)

		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = alice.InviteUser(ctx, created.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID})
		wantMxErr(t, "POST /invite of a blocking user", err, 403, "M_INVITE_BLOCKED")
		_, err = alice.SendStateEvent(ctx, created.RoomID, event.StateMember, bob.UserID.String(), map[string]any{"membership": "invite"})
		wantMxErr(t, "PUT state m.room.member invite of a blocking user", err, 403, "M_INVITE_BLOCKED")

		remote, err := carol.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = carol.InviteUser(ctx, remote.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID})
		wantMxErr(t, "an invite over federation of a blocking user", err, 403, "M_INVITE_BLOCKED")

		// createRoom succeeds without the blocked invite.
		dm, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatalf("createRoom inviting a blocking user: %v", err)
		}
		var member event.MemberEventContent
		if err := alice.StateEvent(ctx, dm.RoomID, event.StateMember, bob.UserID.String(), &member); err == nil {
			t.Errorf("a room created with a blocked invitee has their member event: %+v", member)
		}

		resp, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := resp.Rooms.Invite[early.RoomID]; ok {
			t.Errorf("/sync shows an invite to a user who now blocks invites")
		}

		// Removing default_action lets invites through again.
		block(false)
		if _, err := alice.InviteUser(ctx, created.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Errorf("inviting after the block is lifted: %v", err)
		}
		if _, err := carol.InviteUser(ctx, remote.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Errorf("inviting over federation after the block is lifted: %v", err)
		}
	})
}
