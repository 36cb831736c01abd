package homeserver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

func mustErrcode(t *testing.T, err error, code string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != code {
		t.Fatalf("got error %v, want %s", err, code)
	}
}

func TestRoomLifecycle(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")

		alias := fmt.Sprintf("lobby%d", time.Now().UnixNano())
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "public_chat", RoomAliasName: alias, Name: "Lobby", Topic: "hello",
			InitialState: []*event.Event{{Type: event.StateRoomAvatar, Content: event.Content{Raw: map[string]any{"url": "mxc://x/y"}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		fullAlias := id.RoomAlias("#" + alias + ":localhost")

		// v12: the room ID derives from the create event's hash.
		var create event.Event
		if err := alice.StateEvent(ctx, roomID, event.StateCreate, "", &create.Content); err != nil {
			t.Fatal(err)
		}
		if v := create.Content.Raw["room_version"]; v != "12" {
			t.Fatalf("room_version = %v, want 12", v)
		}

		res, err := bob.ResolveAlias(ctx, fullAlias)
		if err != nil || res.RoomID != roomID {
			t.Fatalf("resolve alias: %v %v", res, err)
		}
		if _, err := bob.JoinRoom(ctx, fullAlias.String(), nil); err != nil {
			t.Fatalf("join by alias: %v", err)
		}
		var name event.RoomNameEventContent
		if err := bob.StateEvent(ctx, roomID, event.StateRoomName, "", &name); err != nil || name.Name != "Lobby" {
			t.Fatalf("name = %q, %v", name.Name, err)
		}
		members, err := alice.JoinedMembers(ctx, roomID)
		if err != nil || len(members.Joined) != 2 {
			t.Fatalf("joined members = %v, %v", members, err)
		}

		// Idempotent sends: the same transaction ID gives the same event.
		r1, err := bob.SendMessageEvent(ctx, roomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "once"}, mautrix.ReqSendEvent{TransactionID: "txn-1"})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := bob.SendMessageEvent(ctx, roomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "once"}, mautrix.ReqSendEvent{TransactionID: "txn-1"})
		if err != nil || r1.EventID != r2.EventID {
			t.Fatalf("retried transaction: %v vs %v (%v)", r1.EventID, r2.EventID, err)
		}
		got, err := alice.GetEvent(ctx, roomID, r1.EventID)
		if err != nil || got.Content.Raw["body"] != "once" {
			t.Fatalf("get event: %v %v", got, err)
		}

		// Redaction strips content.
		if _, err := bob.RedactEvent(ctx, roomID, r1.EventID); err != nil {
			t.Fatalf("redact: %v", err)
		}
		got, err = alice.GetEvent(ctx, roomID, r1.EventID)
		if err != nil || got.Content.Raw["body"] != nil || got.Unsigned.RedactedBecause == nil {
			t.Fatalf("after redaction: content %v, redacted_because %v, %v", got.Content.Raw, got.Unsigned.RedactedBecause, err)
		}

		// Profile changes reach the member event.
		if err := bob.SetDisplayName(ctx, "Bobby"); err != nil {
			t.Fatal(err)
		}
		var member event.MemberEventContent
		if err := alice.StateEvent(ctx, roomID, event.StateMember, bob.UserID.String(), &member); err != nil || member.Displayname != "Bobby" {
			t.Fatalf("member displayname = %q, %v", member.Displayname, err)
		}

		// Kick, ban, unban.
		if _, err := alice.KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "bye"}); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.SendText(ctx, roomID, "still here?"); err == nil {
			t.Fatal("kicked user could still send")
		}
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatalf("rejoin public room: %v", err)
		}
		if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: bob.UserID}); err != nil {
			t.Fatal(err)
		}
		_, err = bob.JoinRoomByID(ctx, roomID)
		mustErrcode(t, err, "M_FORBIDDEN")
		if _, err := alice.UnbanUser(ctx, roomID, &mautrix.ReqUnbanUser{UserID: bob.UserID}); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatalf("join after unban: %v", err)
		}
		// Bob leaves and forgets; the room disappears from joined_rooms.
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.ForgetRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		jr, err := bob.JoinedRooms(ctx)
		if err != nil || len(jr.JoinedRooms) != 0 {
			t.Fatalf("joined rooms after leave = %v, %v", jr, err)
		}
		// Members filter.
		ms, err := alice.Members(ctx, roomID, mautrix.ReqMembers{Membership: event.MembershipLeave})
		if err != nil || len(ms.Chunk) != 1 || ms.Chunk[0].GetStateKey() != bob.UserID.String() {
			t.Fatalf("members?membership=leave = %v, %v", ms, err)
		}
		// Alias deletion by its creator.
		if _, err := alice.DeleteAlias(ctx, fullAlias); err != nil {
			t.Fatal(err)
		}
		_, err = bob.ResolveAlias(ctx, fullAlias)
		mustErrcode(t, err, "M_NOT_FOUND")
	})
}

func TestSyncLongPollAndGaps(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		// Presence off: the idle long-poll below must find nothing new,
		// and two users coming online are news.
		srv := mxtest.Start(t, engine, func(c *config.Config) { c.Presence.Enabled = false })
		alice, bob := srv.Client("alice"), srv.Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		start, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		// A long-poll returns as soon as a message arrives, not at its
		// timeout. Should it wake first for another change (the room's
		// unread counts), bob polls on until the message is there.
		done := make(chan time.Duration, 1)
		var resp *mautrix.RespSync
		go func() {
			t0 := time.Now()
			since := start.NextBatch
			for {
				resp, err = bob.SyncRequest(ctx, 20000, since, "", false, "")
				if err != nil || resp.Rooms.Join[roomID] != nil || time.Since(t0) > 10*time.Second {
					break
				}
				since = resp.NextBatch
			}
			done <- time.Since(t0)
		}()
		time.Sleep(100 * time.Millisecond)
		if _, err := alice.SendText(ctx, roomID, "wake up"); err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if d > 5*time.Second {
				t.Fatalf("long-poll took %v to return", d)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("long-poll did not wake")
		}
		if resp.Rooms.Join[roomID] == nil {
			t.Fatalf("the woken sync has no timeline of the room: %+v", resp.Rooms)
		}
		evs := resp.Rooms.Join[roomID].Timeline.Events
		if len(evs) != 1 || evs[0].Content.Raw["body"] != "wake up" {
			t.Fatalf("woken sync timeline = %v", evs)
		}
		// An empty long-poll returns at its timeout with the same position.
		t0 := time.Now()
		idle, err := bob.SyncRequest(ctx, 300, resp.NextBatch, "", false, "")
		if err != nil || time.Since(t0) < 250*time.Millisecond || len(idle.Rooms.Join) != 0 {
			t.Fatalf("idle long-poll: %v after %v, rooms %v", err, time.Since(t0), idle.Rooms.Join)
		}

		// A gap: 15 messages and a name change, synced with limit 5.
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateRoomName, "", map[string]any{"name": "renamed"}); err != nil {
			t.Fatal(err)
		}
		for i := range 15 {
			if _, err := alice.SendText(ctx, roomID, fmt.Sprintf("m%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		gap, err := bob.SyncRequest(ctx, 0, idle.NextBatch, `{"room":{"timeline":{"limit":5}}}`, false, "")
		if err != nil {
			t.Fatal(err)
		}
		jr := gap.Rooms.Join[roomID]
		if !jr.Timeline.Limited || len(jr.Timeline.Events) != 5 || jr.Timeline.PrevBatch == "" {
			t.Fatalf("gap: limited=%v events=%d prev_batch=%q", jr.Timeline.Limited, len(jr.Timeline.Events), jr.Timeline.PrevBatch)
		}
		var sawName bool
		for _, ev := range jr.State.Events {
			sawName = sawName || ev.Type == event.StateRoomName
		}
		if !sawName {
			t.Fatal("state section of a limited sync lacks the name change in the gap")
		}
		// prev_batch continues exactly where the timeline starts.
		older, err := bob.Messages(ctx, roomID, jr.Timeline.PrevBatch, "", mautrix.DirectionBackward, nil, 10)
		if err != nil || len(older.Chunk) != 10 || older.Chunk[0].Content.Raw["body"] != "m9" {
			t.Fatalf("messages from prev_batch: %d events, first %v, %v", len(older.Chunk), older.Chunk[0].Content.Raw, err)
		}
		// Leaving shows the room under leave in the next sync.
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		left, err := bob.SyncRequest(ctx, 0, gap.NextBatch, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := left.Rooms.Leave[roomID]; !ok {
			t.Fatalf("room not under leave after leaving: %v", left.Rooms)
		}
		// Lazy-loaded members: only the senders of the timeline.
		carol := srv.Client("carol")
		if _, err := carol.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendText(ctx, roomID, "last"); err != nil {
			t.Fatal(err)
		}
		lazy, err := carol.SyncRequest(ctx, 0, "", `{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}`, false, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range lazy.Rooms.Join[roomID].State.Events {
			if ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String() {
				t.Fatal("lazy-loaded sync included a member who sent nothing in the timeline")
			}
		}
		if s := lazy.Rooms.Join[roomID].Summary; s.JoinedMemberCount == nil || *s.JoinedMemberCount != 2 {
			t.Fatalf("summary joined count = %v, want 2", s.JoinedMemberCount)
		}
	})
}

func asHTTPError(err error, he *mautrix.HTTPError) bool { return errors.As(err, he) }

// TestConcurrentIdenticalCreates: from room version 12 a room's ID is the
// hash of its create event, so one user creating rooms with the same
// settings in parallel (as bridges and scripts do) must still get a new
// room each time, never a 500 for a duplicate room ID.
func TestConcurrentIdenticalCreates(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		const n = 24
		ids := make(chan id.RoomID, n)
		errs := make(chan error, n)
		for range n {
			go func() {
				resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
				if err != nil {
					errs <- err
					return
				}
				ids <- resp.RoomID
			}()
		}
		seen := map[id.RoomID]bool{}
		for range n {
			select {
			case err := <-errs:
				t.Fatalf("createRoom: %v", err)
			case roomID := <-ids:
				if seen[roomID] {
					t.Fatalf("room %s created twice", roomID)
				}
				seen[roomID] = true
			}
		}
		joined, err := alice.JoinedRooms(ctx)
		if err != nil || len(joined.JoinedRooms) != n {
			t.Fatalf("joined rooms: %d, %v; want %d", len(joined.JoinedRooms), err, n)
		}
	})
}

// TestRetryAfterKick: a client retrying a send (its first answer was lost)
// gets the event it sent, even if it may no longer send to the room.
func TestRetryAfterKick(t *testing.T) {
	ctx := context.Background()
	srv := mxtest.Start(t, "sqlite")
	alice, bob := srv.Client("alice"), srv.Client("bob")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"msgtype": "m.text", "body": "before the kick"}
	first, err := bob.SendMessageEvent(ctx, created.RoomID, event.EventMessage, body, mautrix.ReqSendEvent{TransactionID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.KickUser(ctx, created.RoomID, &mautrix.ReqKickUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	again, err := bob.SendMessageEvent(ctx, created.RoomID, event.EventMessage, body, mautrix.ReqSendEvent{TransactionID: "t1"})
	if err != nil || again.EventID != first.EventID {
		t.Fatalf("retry after kick: %v, %v; want %s", again, err, first.EventID)
	}
	_, err = bob.SendMessageEvent(ctx, created.RoomID, event.EventMessage, body, mautrix.ReqSendEvent{TransactionID: "t2"})
	mustErrcode(t, err, "M_FORBIDDEN")
}
