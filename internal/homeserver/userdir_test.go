package homeserver_test

import (
	"context"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// found returns the user IDs a directory search by cli for term returns.
func found(t *testing.T, cli *mautrix.Client, term string, limit int) ([]id.UserID, bool) {
	t.Helper()
	resp, err := cli.SearchUserDirectory(context.Background(), term, limit)
	if err != nil {
		t.Fatalf("searching the user directory for %q: %v", term, err)
	}
	var out []id.UserID
	for _, r := range resp.Results {
		out = append(out, r.UserID)
	}
	return out, resp.Limited
}

// finds checks whether searching for term finds user.
func finds(t *testing.T, cli *mautrix.Client, term string, user id.UserID, want bool) {
	t.Helper()
	got, _ := found(t, cli, term, 10)
	if slices.Contains(got, user) != want {
		t.Errorf("search %q by %s: found %v, want %s found = %v", term, cli.UserID, got, user, want)
	}
}

func setName(t *testing.T, cli *mautrix.Client, name string) {
	t.Helper()
	if err := cli.SetDisplayName(context.Background(), name); err != nil {
		t.Fatalf("setting display name: %v", err)
	}
}

// TestUserDirectoryVisibility: a user is found by a prefix of their
// display name only while they share a room with the searcher or are in a
// public room, as in Synapse.
func TestUserDirectoryVisibility(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		me, zoe, host := hs.Client("me"), hs.Client("zoe"), hs.Client("host")
		setName(t, zoe, "Zoë Quartermaine")

		finds(t, me, "Quarter", zoe.UserID, false)

		// Invited is not joined.
		private, err := me.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{zoe.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		finds(t, me, "Quarter", zoe.UserID, false)
		if _, err := zoe.JoinRoom(ctx, private.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		finds(t, me, "Quarter", zoe.UserID, true)
		finds(t, me, "zoe", zoe.UserID, true)
		finds(t, me, "ZOË QUA", zoe.UserID, true)
		finds(t, me, "zoe nobody", zoe.UserID, false)
		if _, err := zoe.LeaveRoom(ctx, private.RoomID); err != nil {
			t.Fatal(err)
		}
		finds(t, me, "Quarter", zoe.UserID, false)

		// A public room makes its members findable by anyone.
		public, err := host.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := zoe.JoinRoom(ctx, public.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		finds(t, me, "quart", zoe.UserID, true)
		// ... until it is closed,
		if _, err := host.SendStateEvent(ctx, public.RoomID, event.StateJoinRules, "", &event.JoinRulesEventContent{JoinRule: event.JoinRuleInvite}); err != nil {
			t.Fatal(err)
		}
		finds(t, me, "quart", zoe.UserID, false)
		// ... and again when anyone may read it.
		if _, err := host.SendStateEvent(ctx, public.RoomID, event.StateHistoryVisibility, "",
			&event.HistoryVisibilityEventContent{HistoryVisibility: event.HistoryVisibilityWorldReadable}); err != nil {
			t.Fatal(err)
		}
		finds(t, me, "quart", zoe.UserID, true)
		// The localpart is searched too.
		finds(t, me, zoe.UserID.Localpart(), zoe.UserID, true)
	})
}

// TestUserDirectoryProfileChange: a new display name is found at once and
// the old one no longer finds the user.
func TestUserDirectoryProfileChange(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		me, other := hs.Client("me"), hs.Client("other")
		created, err := me.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{other.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.JoinRoom(ctx, created.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		setName(t, other, "Árvíztűrő Tükörfúrógép")
		finds(t, me, "arvizturo", other.UserID, true)
		finds(t, me, "TÜKÖR", other.UserID, true)
		setName(t, other, "Xavier Quill")
		finds(t, me, "quil", other.UserID, true)
		finds(t, me, "arvizturo", other.UserID, false)
		resp, err := me.SearchUserDirectory(ctx, "xavier", 10)
		if err != nil {
			t.Fatal(err)
		}
		// The spec's field is display_name; mautrix reads displayname, so
		// it keeps the spec's in Extra.
		if len(resp.Results) != 1 || resp.Results[0].Extra["display_name"] != "Xavier Quill" {
			t.Errorf("results = %+v, want Xavier Quill", resp.Results)
		}
	})
}

// TestUserDirectoryLimit: limit caps the results and limited says so.
func TestUserDirectoryLimit(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		me := hs.Client("me")
		public, err := me.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"Limit Ann", "Limit Bob", "Limit Cy"} {
			cli := hs.Client("lim")
			setName(t, cli, name)
			if _, err := cli.JoinRoom(ctx, public.RoomID.String(), nil); err != nil {
				t.Fatal(err)
			}
		}
		if got, limited := found(t, me, "limit", 2); len(got) != 2 || !limited {
			t.Errorf("limit 2: %d results, limited %v; want 2, true", len(got), limited)
		}
		if got, limited := found(t, me, "limit", 10); len(got) != 3 || limited {
			t.Errorf("limit 10: %d results, limited %v; want 3, false", len(got), limited)
		}
	})
}

// TestUserDirectorySearchAllUsers: with search_all_users, a local user in
// no room is found; a deactivated one is not.
func TestUserDirectorySearchAllUsers(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		hs := mxtest.Start(t, engine, func(c *config.Config) { c.UserDirectory.SearchAllUsers = true })
		me, loner := hs.Client("me"), hs.Client("loner")
		setName(t, loner, "Solitary Sam")
		finds(t, me, "solit", loner.UserID, true)
		if err := hs.Users.Deactivate(context.Background(), loner.UserID); err != nil {
			t.Fatal(err)
		}
		finds(t, me, "solit", loner.UserID, false)
	})
}

// TestUserDirectoryRemoteUser: a user of another server who joins a room
// shared with the searcher is found by the display name of their join.
func TestUserDirectoryRemoteUser(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		setName(t, bob, "Bartholomew Remote")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		finds(t, alice, "barthol", bob.UserID, false)
		if _, err := bob.JoinRoom(ctx, created.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err != nil {
			t.Fatal(err)
		}
		finds(t, alice, "barthol", bob.UserID, true)
		// bob's server knows alice from the room too.
		waitFor(t, "bob to find alice", func() (bool, error) {
			got, _ := found(t, bob, alice.UserID.Localpart(), 10)
			return slices.Contains(got, alice.UserID), nil
		})
		// A remote rename arrives as a new join event.
		setName(t, bob, "Bart Renamed")
		waitFor(t, "alice to find bob's new name", func() (bool, error) {
			got, _ := found(t, alice, "renamed", 10)
			return slices.Contains(got, bob.UserID), nil
		})
	})
}

// TestUserDirectoryBackfill: rooms and accounts from before the directory
// (its tables emptied as the 00015 migration finds them) are indexed at
// the next start.
func TestUserDirectoryBackfill(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		me, friend, stranger, host := hs.Client("me"), hs.Client("friend"), hs.Client("stranger"), hs.Client("host")
		setName(t, friend, "Fernanda Friend")
		setName(t, stranger, "Stella Stranger")
		private, err := me.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{friend.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := friend.JoinRoom(ctx, private.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		public, err := host.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stranger.JoinRoom(ctx, public.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`DELETE FROM user_directory_terms`, `DELETE FROM user_directory`, `DELETE FROM user_directory_public_rooms`,
			`DELETE FROM user_directory_members`,
			`INSERT INTO user_directory_members (user_id, room_id) SELECT state_key, room_id FROM current_state WHERE type = 'm.room.member' AND membership = 'join'`,
			`INSERT INTO user_directory_backfill (pending) VALUES (1)`,
		} {
			if _, err := hs.DB().ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		finds(t, me, "fernanda", friend.UserID, false)
		hs.Restart()
		finds(t, me, "fernanda", friend.UserID, true)
		finds(t, me, "stella", stranger.UserID, true)
	})
}

// TestUserDirectoryOrder: as in Synapse, users who share a room with the
// searcher rank above those only found through a public room.
func TestUserDirectoryOrder(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		me, host, aaron, zed := hs.Client("me"), hs.Client("host"), hs.Client("aaron"), hs.Client("zed")
		setName(t, aaron, "Order Aaron")
		setName(t, zed, "Order Zed")
		public, err := host.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := aaron.JoinRoom(ctx, public.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		private, err := me.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{zed.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := zed.JoinRoom(ctx, private.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		got, _ := found(t, me, "order", 10)
		if want := []id.UserID{zed.UserID, aaron.UserID}; !slices.Equal(got, want) {
			t.Errorf("order: got %v, want %v (shared room first)", got, want)
		}
	})
}
