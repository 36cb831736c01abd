package homeserver_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// upgradeRoom calls POST /rooms/{roomId}/upgrade (mautrix has no method
// for it).
func upgradeRoom(cli *mautrix.Client, roomID id.RoomID, body map[string]any) (id.RoomID, error) {
	var resp struct {
		ReplacementRoom id.RoomID `json:"replacement_room"`
	}
	_, err := cli.MakeRequest(context.Background(), http.MethodPost, cli.BuildClientURL("v3", "rooms", roomID, "upgrade"), body, &resp)
	return resp.ReplacementRoom, err
}

// stateContent reads one state event's content as a map.
func stateContent(t *testing.T, cli *mautrix.Client, roomID id.RoomID, typ, key string) map[string]any {
	t.Helper()
	var c map[string]any
	if err := cli.StateEvent(context.Background(), roomID, event.NewEventType(typ), key, &c); err != nil {
		t.Fatalf("%s state %s/%q: %v", roomID, typ, key, err)
	}
	return c
}

// TestRoomUpgrade upgrades a v10 room to v11 and that room to v12 (with an
// additional creator), on the first of two federated servers: the state,
// bans, aliases and directory listing move, the old room is tombstoned
// and read-only for normal members, local members' tags, direct chat
// entries and push rules about the room are copied, and a member on the
// other server follows the tombstone into the new room.
func TestRoomUpgrade(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob, dave := hs[0].Client("alice"), hs[0].Client("bob"), hs[0].Client("dave")
		carol, frank := hs[1].Client("carol"), hs[1].Client("frank")
		alias := fmt.Sprintf("upg%d", time.Now().UnixNano())
		fullAlias := id.NewRoomAlias(alias, hs[0].Config.ServerName)
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "public_chat", Visibility: "public", RoomVersion: "10", RoomAliasName: alias,
			Name: "Old name", Topic: "Old topic",
			InitialState: []*event.Event{
				{Type: event.StateRoomAvatar, Content: event.Content{Raw: map[string]any{"url": "mxc://x/avatar"}}},
				{Type: event.StateServerACL, Content: event.Content{Raw: map[string]any{"allow": []string{"*"}, "deny": []string{"evil.example"}}}},
				{Type: event.StateHistoryVisibility, Content: event.Content{Raw: map[string]any{"history_visibility": "joined"}}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		oldRoom := created.RoomID
		joinAll(t, oldRoom, hs[0].Config.ServerName, alice, bob, carol, frank)
		if _, err := alice.BanUser(ctx, oldRoom, &mautrix.ReqBanUser{UserID: dave.UserID, Reason: "spam"}); err != nil {
			t.Fatal(err)
		}
		pl := stateContent(t, alice, oldRoom, "m.room.power_levels", "")
		pl["users"].(map[string]any)[carol.UserID.String()] = 50
		if _, err := alice.SendStateEvent(ctx, oldRoom, event.StatePowerLevels, "", pl); err != nil {
			t.Fatal(err)
		}

		// Bob's own settings about the room.
		if err := bob.AddTag(ctx, oldRoom, event.RoomTagFavourite, 0.25); err != nil {
			t.Fatal(err)
		}
		if err := bob.SetAccountData(ctx, "m.direct", map[string][]id.RoomID{alice.UserID.String(): {oldRoom}}); err != nil {
			t.Fatal(err)
		}
		notify := []*pushrules.PushAction{{Action: pushrules.ActionNotify}}
		if err := bob.PutPushRule(ctx, "global", pushrules.RoomRule, string(oldRoom), &mautrix.ReqPutPushRule{Actions: notify}); err != nil {
			t.Fatal(err)
		}
		if err := bob.PutPushRule(ctx, "global", pushrules.OverrideRule, "mute-"+string(oldRoom), &mautrix.ReqPutPushRule{
			Actions:    notify,
			Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindEventMatch, Key: "room_id", Pattern: string(oldRoom)}},
		}); err != nil {
			t.Fatal(err)
		}

		// Carol's power reaches her server before she uses it there.
		waitFor(t, "carol's power level on her server", func() (bool, error) {
			got := map[string]any{}
			if err := carol.StateEvent(ctx, oldRoom, event.StatePowerLevels, "", &got); err != nil {
				return false, err
			}
			users, _ := got["users"].(map[string]any)
			return users[carol.UserID.String()] == float64(50), nil
		})
		// Carol's and frank's tags, an alias and a directory listing are on
		// their own server, which the upgrade does not reach.
		if err := carol.AddTag(ctx, oldRoom, "u.work", 0.5); err != nil {
			t.Fatal(err)
		}
		if err := frank.AddTag(ctx, oldRoom, "u.later", 0.5); err != nil {
			t.Fatal(err)
		}
		remoteAlias := id.NewRoomAlias(alias+"-remote", hs[1].Config.ServerName)
		if _, err := carol.CreateAlias(ctx, remoteAlias, oldRoom); err != nil {
			t.Fatal(err)
		}
		if _, err := carol.MakeRequest(ctx, http.MethodPut, carol.BuildClientURL("v3", "directory", "list", "room", oldRoom), map[string]string{"visibility": "public"}, nil); err != nil {
			t.Fatal(err)
		}

		// Refusals.
		_, err = upgradeRoom(bob, oldRoom, map[string]any{"new_version": "11"})
		mustStatus(t, "an upgrade by a member without power", err, 403, "M_FORBIDDEN")
		_, err = upgradeRoom(alice, oldRoom, map[string]any{"new_version": "999"})
		mustStatus(t, "an upgrade to an unknown version", err, 400, "M_UNSUPPORTED_ROOM_VERSION")
		_, err = upgradeRoom(alice, oldRoom, map[string]any{})
		mustStatus(t, "an upgrade without new_version", err, 400, "M_BAD_JSON")

		newRoom, err := upgradeRoom(alice, oldRoom, map[string]any{"new_version": "11"})
		if err != nil {
			t.Fatal(err)
		}
		// A client's retry gets the same room, not a second one.
		if again, err := upgradeRoom(alice, oldRoom, map[string]any{"new_version": "11"}); err != nil || again != newRoom {
			t.Errorf("repeated upgrade = %s (%v), want %s again", again, err, newRoom)
		}

		// The tombstone, and the create event pointing back at it.
		tomb := stateContent(t, alice, oldRoom, "m.room.tombstone", "")
		if tomb["replacement_room"] != newRoom.String() || tomb["body"] == "" {
			t.Fatalf("tombstone = %v, want replacement_room %s", tomb, newRoom)
		}
		var tombEv event.Event
		if err := alice.StateEvent(ctx, oldRoom, event.StateTombstone, "", &tombEv); err != nil {
			t.Fatal(err)
		}
		state, err := alice.State(ctx, oldRoom)
		if err != nil {
			t.Fatal(err)
		}
		tombID := state[event.StateTombstone][""].ID
		create := stateContent(t, alice, newRoom, "m.room.create", "")
		pred, _ := create["predecessor"].(map[string]any)
		if create["room_version"] != "11" || pred["room_id"] != oldRoom.String() || pred["event_id"] != tombID.String() {
			t.Fatalf("new create = %v, want v11 with predecessor %s/%s", create, oldRoom, tombID)
		}

		// Copied state.
		for _, c := range []struct{ typ, field, want string }{
			{"m.room.name", "name", "Old name"},
			{"m.room.topic", "topic", "Old topic"},
			{"m.room.avatar", "url", "mxc://x/avatar"},
			{"m.room.join_rules", "join_rule", "public"},
			{"m.room.history_visibility", "history_visibility", "joined"},
			{"m.room.guest_access", "guest_access", "forbidden"},
			{"m.room.canonical_alias", "alias", fullAlias.String()},
		} {
			if got := stateContent(t, alice, newRoom, c.typ, "")[c.field]; got != c.want {
				t.Errorf("new room %s.%s = %v, want %q", c.typ, c.field, got, c.want)
			}
		}
		if deny := stateContent(t, alice, newRoom, "m.room.server_acl", "")["deny"]; fmt.Sprint(deny) != "[evil.example]" {
			t.Errorf("new room server ACL deny = %v", deny)
		}
		newPL := stateContent(t, alice, newRoom, "m.room.power_levels", "")
		if u := newPL["users"].(map[string]any); u[carol.UserID.String()] != float64(50) || u[alice.UserID.String()] != float64(100) {
			t.Errorf("new room power level users = %v", u)
		}
		if m := memberContent(t, alice, newRoom, dave.UserID); m["membership"] != "ban" {
			t.Errorf("dave in the new room: %v, want banned", m)
		}
		if _, err := dave.JoinRoom(ctx, newRoom.String(), nil); err == nil {
			t.Error("banned dave joined the new room")
		}

		// Aliases and directory.
		res, err := bob.ResolveAlias(ctx, fullAlias)
		if err != nil || res.RoomID != newRoom {
			t.Errorf("alias resolves to %v (%v), want %s", res, err, newRoom)
		}
		if c := stateContent(t, alice, oldRoom, "m.room.canonical_alias", ""); c["alias"] != nil {
			t.Errorf("old room still has canonical alias %v", c)
		}
		for room, want := range map[id.RoomID]string{oldRoom: "private", newRoom: "public"} {
			if vis := rawGet(t, alice, "directory", "list", "room", room)["visibility"]; vis != want {
				t.Errorf("directory visibility of %s = %v, want %s", room, vis, want)
			}
		}

		// The old room is read-only for normal members.
		oldPL := stateContent(t, alice, oldRoom, "m.room.power_levels", "")
		if oldPL["events_default"] != float64(50) || oldPL["invite"] != float64(50) {
			t.Errorf("old power levels = %v, want events_default and invite 50", oldPL)
		}
		_, err = bob.SendText(ctx, oldRoom, "still here?")
		mustStatus(t, "a message to the tombstoned room", err, 403, "M_FORBIDDEN")

		// Bob's settings followed the room.
		tags, err := bob.GetTags(ctx, newRoom)
		if err != nil || tags.Tags[event.RoomTagFavourite].Order != "0.25" {
			t.Errorf("bob's tags on the new room = %v (%v)", tags, err)
		}
		var direct map[string][]id.RoomID
		if err := bob.GetAccountData(ctx, "m.direct", &direct); err != nil || !slices.Contains(direct[alice.UserID.String()], newRoom) {
			t.Errorf("bob's m.direct = %v (%v), want the new room listed", direct, err)
		}
		if r, err := bob.GetPushRule(ctx, "global", pushrules.RoomRule, string(newRoom)); err != nil || len(r.Actions) != 1 || r.Actions[0].Action != pushrules.ActionNotify {
			t.Errorf("bob's room push rule for the new room = %+v (%v)", r, err)
		}
		r, err := bob.GetPushRule(ctx, "global", pushrules.OverrideRule, "mute-"+string(newRoom))
		if err != nil || len(r.Conditions) != 1 || r.Conditions[0].Pattern != string(newRoom) {
			t.Errorf("bob's override push rule for the new room = %+v (%v)", r, err)
		}

		// Carol, on the other server, follows the tombstone: the new room's
		// ID and the tombstone sender's server, as the spec tells clients.
		var carolTomb event.TombstoneEventContent
		waitFor(t, "the tombstone on carol's server", func() (bool, error) {
			err := carol.StateEvent(ctx, oldRoom, event.StateTombstone, "", &carolTomb)
			return err == nil, err
		})
		if carolTomb.ReplacementRoom != newRoom {
			t.Fatalf("carol's tombstone points at %s, want %s", carolTomb.ReplacementRoom, newRoom)
		}
		if _, err := carol.JoinRoom(ctx, newRoom.String(), &mautrix.ReqJoinRoom{Via: []string{tombEv.Sender.Homeserver()}}); err != nil {
			t.Fatalf("carol joining the new room: %v", err)
		}
		if _, err := carol.SendText(ctx, newRoom, "hello from the new room"); err != nil {
			t.Fatal(err)
		}
		waitMessages(t, alice, newRoom, []string{"hello from the new room"})
		// Her server, joining the successor, learnt of the upgrade: her tag,
		// frank's (who has not joined yet), the alias and the listing there
		// moved as they did on the upgrader's server (frank's tag is copied
		// last, so the listing has moved once it is there).
		for _, c := range []struct {
			cli *mautrix.Client
			tag event.RoomTag
		}{{carol, "u.work"}, {frank, "u.later"}} {
			waitFor(t, fmt.Sprintf("%s's tag on the new room", c.cli.UserID), func() (bool, error) {
				tags, err := c.cli.GetTags(ctx, newRoom)
				_, ok := tags.Tags[c.tag]
				return err == nil && ok, err
			})
		}
		waitFor(t, "the remote alias to move", func() (bool, error) {
			res, err := carol.ResolveAlias(ctx, remoteAlias)
			return err == nil && res.RoomID == newRoom, err
		})
		for room, want := range map[id.RoomID]string{oldRoom: "private", newRoom: "public"} {
			if vis := rawGet(t, carol, "directory", "list", "room", room)["visibility"]; vis != want {
				t.Errorf("visibility of %s on carol's server = %v, want %s", room, vis, want)
			}
		}

		// v11 → v12 with bob as an additional creator: the predecessor has
		// no event_id, the creators are listed in the create event and
		// have no power level. Bob listed twice, and alice (the upgrader), make
		// one additional creator.
		v12Room, err := upgradeRoom(alice, newRoom, map[string]any{"new_version": "12", "additional_creators": []id.UserID{bob.UserID, bob.UserID, alice.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		create = stateContent(t, alice, v12Room, "m.room.create", "")
		pred, _ = create["predecessor"].(map[string]any)
		if create["room_version"] != "12" || pred["room_id"] != newRoom.String() || pred["event_id"] != nil {
			t.Errorf("v12 create = %v, want predecessor %s without event_id", create, newRoom)
		}
		if ac := fmt.Sprint(create["additional_creators"]); ac != fmt.Sprintf("[%s]", bob.UserID) {
			t.Errorf("additional_creators = %s, want [%s]", ac, bob.UserID)
		}
		users := stateContent(t, alice, v12Room, "m.room.power_levels", "")["users"].(map[string]any)
		if _, ok := users[alice.UserID.String()]; ok || users[carol.UserID.String()] != float64(50) {
			t.Errorf("v12 power level users = %v, want carol at 50 and no creator", users)
		}
		if got := stateContent(t, alice, newRoom, "m.room.tombstone", "")["replacement_room"]; got != v12Room.String() {
			t.Errorf("v11 room's tombstone points at %v, want %s", got, v12Room)
		}
		// Bob, an additional creator, may send the power levels.
		if _, err := bob.JoinRoom(ctx, v12Room.String(), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.SendStateEvent(ctx, v12Room, event.StateRoomName, "", map[string]string{"name": "by bob"}); err != nil {
			t.Errorf("an additional creator renaming the room: %v", err)
		}
		_, err = upgradeRoom(dave, v12Room, map[string]any{"new_version": "12"})
		mustStatus(t, "an upgrade by a non-member", err, 403, "M_FORBIDDEN")
	})
}

// TestSpaceUpgradeByModerator: a moderator whom the power levels let send
// the tombstone upgrades a space. The new room keeps the space type and
// its (not removed) children, and the moderator, raised to copy the state
// (m.room.power_levels needs 100 here), ends at their own level again.
func TestSpaceUpgradeByModerator(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, mod := srv.Client("alice"), srv.Client("mod")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "public_chat", RoomVersion: "10",
			CreationContent: map[string]any{"type": "m.space"},
			InitialState: []*event.Event{
				{Type: event.StateSpaceChild, StateKey: ptr("!child:elsewhere"), Content: event.Content{Raw: map[string]any{"via": []string{"elsewhere"}}}},
				{Type: event.StateSpaceChild, StateKey: ptr("!gone:elsewhere"), Content: event.Content{Raw: map[string]any{}}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		space := created.RoomID
		if _, err := mod.JoinRoom(ctx, space.String(), nil); err != nil {
			t.Fatal(err)
		}
		pl := stateContent(t, alice, space, "m.room.power_levels", "")
		pl["users"].(map[string]any)[mod.UserID.String()] = 50
		pl["events"].(map[string]any)["m.room.tombstone"] = 50
		if _, err := alice.SendStateEvent(ctx, space, event.StatePowerLevels, "", pl); err != nil {
			t.Fatal(err)
		}
		newSpace, err := upgradeRoom(mod, space, map[string]any{"new_version": "11"})
		if err != nil {
			t.Fatal(err)
		}
		if typ := stateContent(t, mod, newSpace, "m.room.create", "")["type"]; typ != "m.space" {
			t.Errorf("new room type = %v, want m.space", typ)
		}
		if via := stateContent(t, mod, newSpace, "m.space.child", "!child:elsewhere")["via"]; fmt.Sprint(via) != "[elsewhere]" {
			t.Errorf("copied child via = %v", via)
		}
		var c map[string]any
		if err := mod.StateEvent(ctx, newSpace, event.StateSpaceChild, "!gone:elsewhere", &c); err == nil {
			t.Errorf("a removed child was copied: %v", c)
		}
		users := stateContent(t, mod, newSpace, "m.room.power_levels", "")["users"].(map[string]any)
		if users[mod.UserID.String()] != float64(50) || users[alice.UserID.String()] != float64(100) {
			t.Errorf("new power level users = %v, want mod back at 50 and alice at 100", users)
		}
	})
}
