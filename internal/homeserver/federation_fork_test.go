package homeserver_test

import (
	"context"
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// joinAll has each client join roomID through via and waits until the
// room's creator (first client) sees them all joined.
func joinAll(t *testing.T, roomID id.RoomID, via string, creator *mautrix.Client, clis ...*mautrix.Client) {
	t.Helper()
	ctx := context.Background()
	for _, c := range clis {
		if _, err := c.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{via}}); err != nil {
			t.Fatalf("%s joining: %v", c.UserID, err)
		}
	}
	for _, c := range clis {
		waitFor(t, fmt.Sprintf("%s joined on the creator's server", c.UserID), func() (bool, error) {
			return membershipOf(ctx, creator, roomID, c.UserID) == "join", nil
		})
	}
}

func TestForkedDAGConverges(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 3)
		alice, bob, carol := hs[0].Client("alice"), hs[1].Client("bob"), hs[2].Client("carol")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "before"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		joinAll(t, roomID, hs[0].Config.ServerName, alice, bob, carol)
		// Bob may change state too, so both sides of the fork can.
		var pl event.PowerLevelsEventContent
		if err := alice.StateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
			t.Fatal(err)
		}
		pl.SetUserLevel(bob.UserID, 50)
		if _, err := alice.SendStateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
			t.Fatal(err)
		}
		waitSameState(t, roomID, alice, bob, carol)

		// Partition: alice's and bob's servers keep their events to
		// themselves while both change the same state.
		hs[0].Partition(true)
		hs[1].Partition(true)
		for i := range 3 {
			if _, err := alice.SendText(ctx, roomID, fmt.Sprintf("alice %d", i)); err != nil {
				t.Fatal(err)
			}
			if _, err := bob.SendText(ctx, roomID, fmt.Sprintf("bob %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateTopic, "", &event.TopicEventContent{Topic: "alice's topic"}); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.SendStateEvent(ctx, roomID, event.StateTopic, "", &event.TopicEventContent{Topic: "bob's topic"}); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.SendStateEvent(ctx, roomID, event.StateRoomName, "", &event.RoomNameEventContent{Name: "bob's name"}); err != nil {
			t.Fatal(err)
		}
		// Reconnect: every server gets both branches and must resolve them
		// to the same state.
		hs[0].Partition(false)
		hs[1].Partition(false)
		final := waitSameState(t, roomID, alice, bob, carol)
		if final["m.room.topic|"] == "" || final["m.room.name|"] == "" {
			t.Fatalf("resolved state lacks the topic or name: %v", final)
		}
		var name event.RoomNameEventContent
		if err := carol.StateEvent(ctx, roomID, event.StateRoomName, "", &name); err != nil || name.Name != "bob's name" {
			t.Fatalf("name after the fork = %q (%v), want bob's unconflicted change", name.Name, err)
		}
		// A message after the merge reaches everyone, and every server
		// shows all twelve messages.
		if _, err := carol.SendText(ctx, roomID, "after the merge"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*mautrix.Client{alice, bob, carol} {
			waitFor(t, fmt.Sprintf("%s to see every message", c.UserID), func() (bool, error) {
				got, err := messagesIn(ctx, c, roomID)
				return len(got) == 7, fmt.Errorf("%q (%v)", got, err)
			})
		}
	})
}

func TestOutboundQueueSurvivesRestart(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		joinAll(t, created.RoomID, hs[0].Config.ServerName, alice, bob)

		// Bob's server goes down; alice's queues what she sends, then
		// restarts herself with the queue full.
		hs[1].Down()
		var want []string
		for i := range 30 {
			body := fmt.Sprintf("queued %d", i)
			if _, err := alice.SendText(ctx, created.RoomID, body); err != nil {
				t.Fatal(err)
			}
			want = append(want, body)
		}
		hs[0].Restart()
		hs[1].Up()
		waitMessages(t, bob, created.RoomID, want)
	})
}
