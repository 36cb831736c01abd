package homeserver_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestProfileFields: custom profile fields and m.tz (spec v1.16) are set,
// read (also by a user of another server) and deleted, within the spec's
// limits; deleting the display name clears it in the member events too.
func TestProfileFields(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, eve, bob := hs[0].Client("alice"), hs[0].Client("eve"), hs[1].Client("bob")
		field := func(cli *mautrix.Client, key string) mautrix.ClientURLPath {
			return mautrix.ClientURLPath{"v3", "profile", alice.UserID.String(), key}
		}
		put := func(cli *mautrix.Client, key string, body any) error {
			_, err := cli.MakeRequest(ctx, "PUT", cli.BuildClientURL(field(cli, key)...), body, nil)
			return err
		}
		get := func(cli *mautrix.Client, key string) (map[string]json.RawMessage, error) {
			var out map[string]json.RawMessage
			path := mautrix.ClientURLPath{"v3", "profile", alice.UserID.String()}
			if key != "" {
				path = field(cli, key)
			}
			_, err := cli.MakeRequest(ctx, "GET", cli.BuildClientURL(path...), nil, &out)
			return out, err
		}
		del := func(cli *mautrix.Client, key string) error {
			_, err := cli.MakeRequest(ctx, "DELETE", cli.BuildClientURL(field(cli, key)...), nil, nil)
			return err
		}

		if err := put(alice, "m.tz", map[string]any{"m.tz": "Europe/Paris"}); err != nil {
			t.Fatalf("setting m.tz: %v", err)
		}
		pronouns := map[string]any{"com.example.pronouns": map[string]any{"en": "she/her"}}
		if err := put(alice, "com.example.pronouns", pronouns); err != nil {
			t.Fatalf("setting a custom field: %v", err)
		}
		if err := alice.SetDisplayName(ctx, "Alice"); err != nil {
			t.Fatal(err)
		}
		all, err := get(eve, "")
		if err != nil {
			t.Fatal(err)
		}
		if string(all["m.tz"]) != `"Europe/Paris"` || string(all["com.example.pronouns"]) != `{"en":"she/her"}` || string(all["displayname"]) != `"Alice"` {
			t.Errorf("the whole profile: %s", all)
		}
		// Over federation, whole and by field.
		remote, err := get(bob, "com.example.pronouns")
		if err != nil || string(remote["com.example.pronouns"]) != `{"en":"she/her"}` {
			t.Errorf("a custom field read from another server: %s, %v", remote, err)
		}
		if remote, err := get(bob, ""); err != nil || string(remote["m.tz"]) != `"Europe/Paris"` {
			t.Errorf("the profile read from another server: %s, %v", remote, err)
		}

		wantMxErr(t, "a key outside the grammar", put(alice, "Bad", map[string]any{"Bad": 1}), 400, "M_INVALID_PARAM")
		long := "com.example." + strings.Repeat("a", 250)
		wantMxErr(t, "a key of over 255 bytes", put(alice, long, map[string]any{long: 1}), 400, "M_KEY_TOO_LARGE")
		wantMxErr(t, "a body without the key", put(alice, "m.tz", map[string]any{"tz": "UTC"}), 400, "M_MISSING_PARAM")
		wantMxErr(t, "m.tz not a string", put(alice, "m.tz", map[string]any{"m.tz": 3}), 400, "M_BAD_JSON")
		big := strings.Repeat("x", 40<<10)
		if err := put(alice, "com.example.big", map[string]any{"com.example.big": big}); err != nil {
			t.Fatalf("a 40 KiB field: %v", err)
		}
		wantMxErr(t, "a profile past 64 KiB", put(alice, "com.example.big2", map[string]any{"com.example.big2": big}), 400, "M_PROFILE_TOO_LARGE")
		wantMxErr(t, "setting another user's field", put(eve, "m.tz", map[string]any{"m.tz": "UTC"}), 403, "M_FORBIDDEN")
		wantMxErr(t, "deleting another user's field", del(eve, "m.tz"), 403, "M_FORBIDDEN")

		if err := del(alice, "com.example.pronouns"); err != nil {
			t.Fatal(err)
		}
		if err := del(alice, "com.example.never"); err != nil {
			t.Errorf("deleting a field never set: %v", err)
		}
		_, err = get(eve, "com.example.pronouns")
		wantMxErr(t, "a deleted field", err, 404, "M_NOT_FOUND")

		// Deleting the display name reaches the member event.
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if err := del(alice, "displayname"); err != nil {
			t.Fatal(err)
		}
		var member event.MemberEventContent
		if err := alice.StateEvent(ctx, created.RoomID, event.StateMember, alice.UserID.String(), &member); err != nil {
			t.Fatal(err)
		}
		if member.Displayname != "" {
			t.Errorf("member event after deleting the display name: %+v", member)
		}
		if p, _ := get(eve, ""); p["displayname"] != nil {
			t.Errorf("profile after deleting the display name: %s", p)
		}
	})
}
