package homeserver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	// Generous, since CI runs every package's tests at once on two cores.
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
}

// publicRoom has creator create a public room and the others join it.
func publicRoom(t *testing.T, creator *mautrix.Client, via string, others ...*mautrix.Client) id.RoomID {
	t.Helper()
	ctx := context.Background()
	created, err := creator.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatalf("creating a room: %v", err)
	}
	var req *mautrix.ReqJoinRoom
	if via != "" {
		req = &mautrix.ReqJoinRoom{Via: []string{via}}
	}
	for _, c := range others {
		waitFor(t, c.UserID.String()+" joins", func() (bool, error) {
			_, err := c.JoinRoom(ctx, created.RoomID.String(), req)
			return err == nil, err
		})
	}
	return created.RoomID
}

// messagesIn returns the bodies of the m.room.message events cli can read
// in the room, oldest first.
func messagesIn(ctx context.Context, cli *mautrix.Client, roomID id.RoomID) ([]string, error) {
	resp, err := cli.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 1000)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := len(resp.Chunk) - 1; i >= 0; i-- {
		ev := resp.Chunk[i]
		// Redacted messages have no body.
		if body, ok := ev.Content.Raw["body"].(string); ok && ev.Type == event.EventMessage {
			out = append(out, body)
		}
	}
	return out, nil
}

// waitMessages waits until cli sees exactly want in the room.
func waitMessages(t *testing.T, cli *mautrix.Client, roomID id.RoomID, want []string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to see %d messages", cli.UserID, len(want)), func() (bool, error) {
		got, err := messagesIn(context.Background(), cli, roomID)
		if err != nil {
			return false, err
		}
		if len(got) > len(want) {
			t.Fatalf("%s sees %d messages, want %d: %q", cli.UserID, len(got), len(want), got)
		}
		return slices.Equal(got, want), fmt.Errorf("have %q", got)
	})
}

// stateOf returns the room state as cli sees it: (type, state_key) → event ID.
func stateOf(ctx context.Context, cli *mautrix.Client, roomID id.RoomID) (map[string]id.EventID, error) {
	st, err := cli.State(ctx, roomID)
	if err != nil {
		return nil, err
	}
	out := map[string]id.EventID{}
	for typ, byKey := range st {
		for key, ev := range byKey {
			out[typ.Type+"|"+key] = ev.ID
		}
	}
	return out, nil
}

// waitSameState waits until every client sees the same room state.
func waitSameState(t *testing.T, roomID id.RoomID, clis ...*mautrix.Client) map[string]id.EventID {
	t.Helper()
	var first map[string]id.EventID
	waitFor(t, "identical state on every server", func() (bool, error) {
		var err error
		if first, err = stateOf(context.Background(), clis[0], roomID); err != nil {
			return false, err
		}
		for _, c := range clis[1:] {
			other, err := stateOf(context.Background(), c, roomID)
			if err != nil {
				return false, err
			}
			if len(other) != len(first) {
				return false, fmt.Errorf("%s sees %d state entries, %s sees %d", clis[0].UserID, len(first), c.UserID, len(other))
			}
			for k, v := range first {
				if other[k] != v {
					return false, fmt.Errorf("%s: %s vs %s", k, v, other[k])
				}
			}
		}
		return true, nil
	})
	return first
}

func membershipOf(ctx context.Context, cli *mautrix.Client, roomID id.RoomID, user id.UserID) string {
	var c event.MemberEventContent
	if err := cli.StateEvent(ctx, roomID, event.StateMember, user.String(), &c); err != nil {
		return ""
	}
	return string(c.Membership)
}

func TestThreeServersFederate(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 3)
		alice := hs[0].Client("alice")
		bob := hs[1].Client("bob")
		carol := hs[2].Client("carol")

		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "federated", RoomAliasName: "fed"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID

		// Invite: bob's server countersigns, bob sees the invite, then
		// joins through alice's server.
		if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatalf("inviting a remote user: %v", err)
		}
		waitFor(t, "bob's invite", func() (bool, error) {
			resp, err := bob.SyncRequest(ctx, 0, "", "", false, "")
			if err != nil {
				return false, err
			}
			_, ok := resp.Rooms.Invite[roomID]
			return ok, nil
		})
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatalf("bob joining through alice's server: %v", err)
		}
		// A direct chat created with a remote invitee: the invite goes out
		// once the room exists.
		dm, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{carol.UserID}})
		if err != nil {
			t.Fatalf("creating a DM with a remote user: %v", err)
		}
		waitFor(t, "carol's DM invite", func() (bool, error) {
			resp, err := carol.SyncRequest(ctx, 0, "", "", false, "")
			if err != nil {
				return false, err
			}
			_, ok := resp.Rooms.Invite[dm.RoomID]
			return ok, nil
		})
		if _, err := carol.JoinRoomByID(ctx, dm.RoomID); err != nil {
			t.Fatalf("carol joining the DM: %v", err)
		}

		// Carol turns an invite down; her server is not in the room, so the
		// rejection goes through alice's (make_leave, send_leave).
		if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
			t.Fatalf("inviting carol: %v", err)
		}
		if _, err := carol.LeaveRoom(ctx, roomID); err != nil {
			t.Fatalf("carol rejecting the invite: %v", err)
		}
		waitFor(t, "carol's rejection on alice's server", func() (bool, error) {
			return membershipOf(ctx, alice, roomID, carol.UserID) == "leave", nil
		})
		// Carol joins by alias, resolved over federation.
		alias := fmt.Sprintf("#fed:%s", hs[0].Config.ServerName)
		if _, err := carol.JoinRoom(ctx, alias, nil); err != nil {
			t.Fatalf("carol joining by remote alias: %v", err)
		}

		// Messages both ways.
		var want []string
		for i, c := range []*mautrix.Client{alice, bob, carol, bob, alice} {
			body := fmt.Sprintf("message %d from %s", i, c.UserID)
			if _, err := c.SendText(ctx, roomID, body); err != nil {
				t.Fatalf("%s sending: %v", c.UserID, err)
			}
			want = append(want, body)
			for _, reader := range []*mautrix.Client{alice, bob, carol} {
				waitMessages(t, reader, roomID, want)
			}
		}
		waitSameState(t, roomID, alice, bob, carol)

		// Typing and read receipts travel as EDUs.
		if _, err := bob.UserTyping(ctx, roomID, true, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		lastID := id.EventID("")
		if resp, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 1); err == nil && len(resp.Chunk) == 1 {
			lastID = resp.Chunk[0].ID
		}
		if err := alice.SendReceipt(ctx, roomID, lastID, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "bob's typing notice on alice's and carol's servers, alice's receipt on bob's", func() (bool, error) {
			typingSeen := func(c *mautrix.Client) bool {
				resp, err := c.SyncRequest(ctx, 0, "", "", false, "")
				if err != nil {
					return false
				}
				for _, ev := range resp.Rooms.Join[roomID].Ephemeral.Events {
					if ev.Type == event.EphemeralEventTyping && strings.Contains(string(ev.Content.VeryRaw), bob.UserID.String()) {
						return true
					}
				}
				return false
			}
			resp, err := bob.SyncRequest(ctx, 0, "", "", false, "")
			if err != nil {
				return false, err
			}
			receipt := false
			for _, ev := range resp.Rooms.Join[roomID].Ephemeral.Events {
				if ev.Type == event.EphemeralEventReceipt && strings.Contains(string(ev.Content.VeryRaw), alice.UserID.String()) {
					receipt = true
				}
			}
			ta, tc := typingSeen(alice), typingSeen(carol)
			return receipt && ta && tc, fmt.Errorf("receipt %v, typing at alice %v, at carol %v", receipt, ta, tc)
		})

		// Leave and rejoin.
		if _, err := carol.LeaveRoom(ctx, roomID); err != nil {
			t.Fatalf("carol leaving: %v", err)
		}
		waitFor(t, "carol's leave on alice's server", func() (bool, error) {
			return membershipOf(ctx, alice, roomID, carol.UserID) == "leave", nil
		})
		if _, err := carol.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[1].Config.ServerName}}); err != nil {
			t.Fatalf("carol rejoining through bob's server: %v", err)
		}
		waitFor(t, "carol's rejoin on alice's server", func() (bool, error) {
			return membershipOf(ctx, alice, roomID, carol.UserID) == "join", nil
		})
		if _, err := carol.SendText(ctx, roomID, "back again"); err != nil {
			t.Fatal(err)
		}
		want = append(want, "back again")
		waitMessages(t, alice, roomID, want)
		waitMessages(t, bob, roomID, want)

		// Ban: carol's server learns it, and carol cannot come back.
		if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: carol.UserID, Reason: "test"}); err != nil {
			t.Fatalf("banning a remote user: %v", err)
		}
		waitFor(t, "the ban on bob's and carol's servers", func() (bool, error) {
			// Carol can no longer read the room, so her server is asked
			// directly.
			m, err := hs[2].Rooms.Membership(ctx, roomID, carol.UserID)
			return m == "ban" && membershipOf(ctx, bob, roomID, carol.UserID) == "ban", err
		})
		_, err = carol.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}})
		var he mautrix.HTTPError
		if !errors.As(err, &he) || he.RespError == nil || he.RespError.ErrCode != "M_FORBIDDEN" {
			t.Fatalf("banned user rejoining: err = %v, want M_FORBIDDEN", err)
		}
		waitSameState(t, roomID, alice, bob)
	})
}

// TestFederationAcrossRoomVersions joins a remote room of every event
// format and auth-rule generation and exchanges messages both ways.
func TestFederationAcrossRoomVersions(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		for _, v := range []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"} {
			t.Run("v"+v, func(t *testing.T) {
				created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: id.RoomVersion(v)})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := bob.JoinRoom(ctx, created.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err != nil {
					t.Fatalf("joining a v%s room over federation: %v", v, err)
				}
				if _, err := bob.SendText(ctx, created.RoomID, "from bob"); err != nil {
					t.Fatal(err)
				}
				// Each server shows events in the order they arrived there, so
				// wait for bob's before alice answers.
				waitMessages(t, alice, created.RoomID, []string{"from bob"})
				if _, err := alice.SendText(ctx, created.RoomID, "from alice"); err != nil {
					t.Fatal(err)
				}
				want := []string{"from bob", "from alice"}
				waitMessages(t, alice, created.RoomID, want)
				waitMessages(t, bob, created.RoomID, want)
				waitSameState(t, created.RoomID, alice, bob)
			})
		}
	})
}

// TestBackfillOverFederation: history from before a remote join is fetched
// from the room's other server when the joiner paginates back into it, 7
// events at a time, as a client scrolling up does.
func TestBackfillOverFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) { pageBackThroughRemoteHistory(t, engine, 30, 7) })
}

// pageBackThroughRemoteHistory has alice send messages messages in a room
// of hs0, bob of hs1 join it, and bob page back pageSize events at a time:
// he must see every message, in order, and reach the create event.
func pageBackThroughRemoteHistory(t *testing.T, engine string, messages, pageSize int) {
	ctx := context.Background()
	hs := mxtest.Federation(t, engine, 2)
	alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range messages {
		body := fmt.Sprintf("history %d", i)
		if _, err := alice.SendText(ctx, created.RoomID, body); err != nil {
			t.Fatal(err)
		}
		want = append(want, body)
	}
	if _, err := bob.JoinRoom(ctx, created.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	from := ""
	sawCreate := false
	for page := 0; page < 20; page++ {
		resp, err := bob.Messages(ctx, created.RoomID, from, "", mautrix.DirectionBackward, nil, pageSize)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Chunk {
			if body, ok := ev.Content.Raw["body"].(string); ok && ev.Type == event.EventMessage {
				got = append([]string{body}, got...)
			}
			sawCreate = sawCreate || ev.Type == event.StateCreate
		}
		if resp.End == "" {
			break
		}
		from = resp.End
	}
	if !slices.Equal(got, want) {
		t.Fatalf("bob paged back to %d of %d messages: %q", len(got), len(want), got)
	}
	if !sawCreate {
		t.Error("paging back did not reach the create event")
	}
}

// TestPublicRoomDirectory: publishing, searching and listing rooms, locally
// and from another server.
func TestPublicRoomDirectory(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		lobby, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Lobby", Topic: "say hello"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Secret"}); err != nil {
			t.Fatal(err)
		}
		names := func(resp *mautrix.RespPublicRooms) []string {
			var out []string
			for _, r := range resp.Chunk {
				out = append(out, r.Name)
			}
			return out
		}
		local, err := alice.PublicRooms(ctx, &mautrix.ReqPublicRooms{})
		if err != nil || !slices.Equal(names(local), []string{"Lobby"}) || local.Chunk[0].NumJoinedMembers != 1 {
			t.Fatalf("local directory = %+v, %v", local, err)
		}
		remote, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: hs[0].Config.ServerName})
		if err != nil || !slices.Equal(names(remote), []string{"Lobby"}) || remote.Chunk[0].Topic != "say hello" {
			t.Fatalf("remote directory = %+v, %v", remote, err)
		}
		for term, want := range map[string]int{"LOB": 1, "hello": 1, "nothing": 0} {
			var got mautrix.RespPublicRooms
			u := bob.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "publicRooms"}, map[string]string{"server": hs[0].Config.ServerName})
			_, err := bob.MakeRequest(ctx, "POST", u, map[string]any{"filter": map[string]string{"generic_search_term": term}}, &got)
			if err != nil || len(got.Chunk) != want {
				t.Errorf("search %q over federation: %d rooms (%v), want %d", term, len(got.Chunk), err, want)
			}
		}
		visURL := func(c *mautrix.Client) string {
			return c.BuildClientURL("v3", "directory", "list", "room", lobby.RoomID)
		}
		private := map[string]string{"visibility": "private"}
		if _, err := bob.MakeRequest(ctx, "PUT", visURL(bob), private, nil); err == nil {
			t.Error("a non-member unpublished the room")
		}
		if _, err := alice.MakeRequest(ctx, "PUT", visURL(alice), private, nil); err != nil {
			t.Fatal(err)
		}
		var vis struct{ Visibility string }
		if _, err := alice.MakeRequest(ctx, "GET", visURL(alice), nil, &vis); err != nil || vis.Visibility != "private" {
			t.Fatalf("visibility after unpublishing = %+v, %v", vis, err)
		}
		if local, err := alice.PublicRooms(ctx, &mautrix.ReqPublicRooms{}); err != nil || len(local.Chunk) != 0 {
			t.Fatalf("directory after unpublishing = %+v, %v", local, err)
		}
	})
}

// TestKnockOverFederation: a user of another server knocks, sees the
// room's stripped state, is invited in answer and joins.
func TestKnockOverFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Knock knock",
			InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Parsed: &event.JoinRulesEventContent{JoinRule: event.JoinRuleKnock}}}}})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		// Joining outright is refused: the room is not public.
		if _, err := bob.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err == nil {
			t.Fatal("joined a knock-only room without an invite")
		}
		if _, err := bob.KnockRoom(ctx, roomID.String(), &mautrix.ReqKnockRoom{Via: []string{hs[0].Config.ServerName}, Reason: "let me in"}); err != nil {
			t.Fatalf("knocking over federation: %v", err)
		}
		resp, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		kr, ok := resp.Rooms.Knock[roomID]
		if !ok || !slices.ContainsFunc(kr.State.Events, func(e *event.Event) bool { return e.Type == event.StateRoomName }) {
			t.Fatalf("bob's sync shows no knock with the room's name: %+v", resp.Rooms.Knock)
		}
		waitFor(t, "bob's knock on alice's server", func() (bool, error) {
			return membershipOf(ctx, alice, roomID, bob.UserID) == "knock", nil
		})
		if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
			t.Fatalf("inviting the knocker: %v", err)
		}
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatalf("joining after the invite: %v", err)
		}
		waitFor(t, "bob joined on alice's server", func() (bool, error) {
			return membershipOf(ctx, alice, roomID, bob.UserID) == "join", nil
		})
	})
}

// TestPublicRoomDirectoryClosedToFederation: with allow_public_rooms off
// (Synapse's default), other servers cannot list the directory.
func TestPublicRoomDirectoryClosedToFederation(t *testing.T) {
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 2, func(c *config.Config) { c.Federation.AllowPublicRooms = false })
	alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
	if _, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public", Name: "Lobby"}); err != nil {
		t.Fatal(err)
	}
	if local, err := alice.PublicRooms(ctx, &mautrix.ReqPublicRooms{}); err != nil || len(local.Chunk) != 1 {
		t.Fatalf("local directory = %+v, %v", local, err)
	}
	_, err := bob.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: hs[0].Config.ServerName})
	mustErrcode(t, err, "M_FORBIDDEN")
}
