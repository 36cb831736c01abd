package homeserver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// syncUntil long-polls /sync from since until want messages with the given
// body prefix arrived in roomID, and returns their bodies in order and the
// final token.
func syncUntil(t *testing.T, cli *mautrix.Client, since string, roomID id.RoomID, want int) ([]string, string) {
	t.Helper()
	ctx := context.Background()
	var bodies []string
	deadline := time.Now().Add(60 * time.Second)
	for len(bodies) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %d of %d messages via /sync", cli.UserID, len(bodies), want)
		}
		resp, err := cli.SyncRequest(ctx, 5000, since, `{"room":{"timeline":{"limit":500}}}`, false, "")
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		since = resp.NextBatch
		if jr, ok := resp.Rooms.Join[roomID]; ok {
			for _, ev := range jr.Timeline.Events {
				if ev.Type == event.EventMessage {
					bodies = append(bodies, ev.Content.Raw["body"].(string))
				}
			}
		}
	}
	return bodies, since
}

func TestTwoUsersExchangeMessagesAndSurviveRestart(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Register("alice", "alice-password")
		bob := srv.Register("bob", "bob-password")

		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "chat", Preset: "private_chat"})
		if err != nil {
			t.Fatalf("createRoom: %v", err)
		}
		roomID := created.RoomID
		if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatalf("invite: %v", err)
		}
		// Bob sees the invite in /sync before joining.
		first, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatalf("bob initial sync: %v", err)
		}
		if _, ok := first.Rooms.Invite[roomID]; !ok {
			t.Fatalf("bob's initial sync has no invite for %s", roomID)
		}
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatalf("join: %v", err)
		}
		aliceStart, err := alice.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatalf("alice initial sync: %v", err)
		}
		bobStart, err := bob.SyncRequest(ctx, 0, first.NextBatch, "", false, "")
		if err != nil {
			t.Fatalf("bob sync: %v", err)
		}

		const n = 100
		var want []string
		for i := range n {
			sender := alice
			if i%2 == 1 {
				sender = bob
			}
			body := fmt.Sprintf("message %03d from %s", i, sender.UserID)
			want = append(want, body)
			if _, err := sender.SendText(ctx, roomID, body); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		for _, c := range []struct {
			cli   *mautrix.Client
			since string
		}{{alice, aliceStart.NextBatch}, {bob, bobStart.NextBatch}} {
			got, _ := syncUntil(t, c.cli, c.since, roomID, n)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s saw messages out of order or wrong:\n got %q\nwant %q", c.cli.UserID, got, want)
			}
		}

		checkMessages := func(cli *mautrix.Client) {
			t.Helper()
			var got []string
			from := ""
			for range 50 {
				resp, err := cli.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, nil, 30)
				if err != nil {
					t.Fatalf("messages: %v", err)
				}
				for _, ev := range resp.Chunk {
					if ev.Type == event.EventMessage {
						got = append([]string{ev.Content.Raw["body"].(string)}, got...)
					}
				}
				if resp.End == "" {
					break
				}
				from = resp.End
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("/messages for %s:\n got %q\nwant %q", cli.UserID, got, want)
			}
		}
		checkMessages(alice)
		checkMessages(bob)

		srv.Restart()
		checkMessages(alice)
		checkMessages(bob)
		after, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatalf("sync after restart: %v", err)
		}
		jr, ok := after.Rooms.Join[roomID]
		if !ok {
			t.Fatalf("room missing from bob's sync after restart")
		}
		last := jr.Timeline.Events[len(jr.Timeline.Events)-1]
		if last.Content.Raw["body"] != want[n-1] {
			t.Fatalf("last timeline event after restart = %v, want %q", last.Content.Raw["body"], want[n-1])
		}
		// The server still accepts events after restart, on top of the old DAG.
		if _, err := alice.SendText(ctx, roomID, "after restart"); err != nil {
			t.Fatalf("send after restart: %v", err)
		}
	})
}
