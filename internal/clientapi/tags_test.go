package clientapi_test

// End-to-end tests of room tags (tags.yaml).

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// syncedTags waits (long-polling from since) for the room's m.tag account
// data in a /sync response and returns its content and the next token.
func syncedTags(t *testing.T, cli *mautrix.Client, roomID id.RoomID, since string) (map[string]any, string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := cli.SyncRequest(ctx, 10000, since, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		since = resp.NextBatch
		if jr, ok := resp.Rooms.Join[roomID]; ok {
			for _, ev := range jr.AccountData.Events {
				if ev.Type.Type == "m.tag" {
					tags, _ := ev.Content.Raw["tags"].(map[string]any)
					return tags, since
				}
			}
		}
	}
	t.Fatalf("%s saw no m.tag in /sync", cli.DeviceID)
	return nil, ""
}

// TestRoomTags: adding, listing and removing tags, order validation,
// another user's tags, and a second device's /sync waking with each
// change.
func TestRoomTags(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice := hs.Register("alicetags", "password-alicetags")
		phone := hs.Login(alice.UserID, "password-alicetags")
		bob := hs.Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		first, err := phone.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}

		if tags, err := alice.GetTags(ctx, roomID); err != nil || tags.Tags == nil || len(tags.Tags) != 0 {
			t.Fatalf("tags before any: %+v, %v; want {\"tags\":{}}", tags, err)
		}

		// The phone is waiting in /sync when the tag is added.
		type synced struct {
			tags  map[string]any
			since string
		}
		got := make(chan synced, 1)
		go func() {
			tags, since := syncedTags(t, phone, roomID, first.NextBatch)
			got <- synced{tags, since}
		}()
		time.Sleep(200 * time.Millisecond)
		if err := alice.AddTag(ctx, roomID, event.RoomTagFavourite, 0.25); err != nil {
			t.Fatal(err)
		}
		s := <-got
		if fav, ok := s.tags["m.favourite"].(map[string]any); !ok || fav["order"] != 0.25 {
			t.Fatalf("phone's /sync m.tag = %v, want m.favourite order 0.25", s.tags)
		}

		if err := alice.AddTagWithCustomData(ctx, roomID, "u.work", map[string]any{"colour": "blue"}); err != nil {
			t.Fatal(err)
		}
		var tags struct {
			Tags map[string]map[string]any `json:"tags"`
		}
		if err := alice.GetTagsWithCustomData(ctx, roomID, &tags); err != nil {
			t.Fatal(err)
		}
		if len(tags.Tags) != 2 || tags.Tags["m.favourite"]["order"] != 0.25 || tags.Tags["u.work"]["colour"] != "blue" {
			t.Fatalf("tags = %v", tags.Tags)
		}

		if err := alice.RemoveTag(ctx, roomID, event.RoomTagFavourite); err != nil {
			t.Fatal(err)
		}
		synced2, _ := syncedTags(t, phone, roomID, s.since)
		if _, ok := synced2["m.favourite"]; ok || synced2["u.work"] == nil {
			t.Fatalf("phone's /sync after removal = %v, want only u.work", synced2)
		}
		// Removing a tag the room does not have is no error.
		if err := alice.RemoveTag(ctx, roomID, event.RoomTagFavourite); err != nil {
			t.Errorf("removing an absent tag: %v", err)
		}

		tagURL := func(cli *mautrix.Client, user id.UserID, tag string) string {
			return cli.BuildClientURL("v3", "user", user, "rooms", roomID, "tags", tag)
		}
		for _, c := range []struct {
			name string
			body any
		}{
			{"order a string", map[string]any{"order": "0.5"}},
			{"order null", json.RawMessage(`{"order":null}`)},
			{"order above 1", map[string]any{"order": 1.5}},
			{"order below 0", map[string]any{"order": -0.1}},
			{"body an array", []int{1}},
		} {
			_, err := alice.MakeRequest(ctx, "PUT", tagURL(alice, alice.UserID, "u.bad"), c.body, nil)
			if st, code := matrixErr(err); st != 400 || code != "M_BAD_JSON" {
				t.Errorf("%s: HTTP %d %s, want 400 M_BAD_JSON", c.name, st, code)
			}
		}
		long := fmt.Sprintf("u.%0256d", 0)
		_, err = alice.MakeRequest(ctx, "PUT", tagURL(alice, alice.UserID, long), map[string]any{}, nil)
		if st, _ := matrixErr(err); st != 400 {
			t.Errorf("a 258-byte tag: HTTP %d, want 400", st)
		}

		// bob may neither read nor change alice's tags.
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			u := tagURL(bob, alice.UserID, "u.work")
			if method == "GET" {
				u = bob.BuildClientURL("v3", "user", alice.UserID, "rooms", roomID, "tags")
			}
			var body any
			if method == "PUT" {
				body = map[string]any{}
			}
			_, err := bob.MakeRequest(ctx, method, u, body, nil)
			if st, code := matrixErr(err); st != 403 || code != "M_FORBIDDEN" {
				t.Errorf("bob %s on alice's tags: HTTP %d %s, want 403 M_FORBIDDEN", method, st, code)
			}
		}
		tags.Tags = nil
		if err := alice.GetTagsWithCustomData(ctx, roomID, &tags); err != nil || len(tags.Tags) != 1 || tags.Tags["u.work"] == nil {
			t.Fatalf("tags after the refused changes = %v, %v", tags.Tags, err)
		}
	})
}
