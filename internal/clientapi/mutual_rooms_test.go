package clientapi_test

import (
	"context"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// mutualRooms calls GET path?user_id=other&from=from and returns the
// joined list, count and next_batch.
func mutualRooms(t *testing.T, s *mxtest.Server, cli *mautrix.Client, path string, other id.UserID, from string) ([]id.RoomID, int, string) {
	t.Helper()
	q := "?user_id=" + url.QueryEscape(other.String())
	if from != "" {
		q += "&from=" + url.QueryEscape(from)
	}
	st, body := acctReq(t, s, "GET", path+q, cli.AccessToken, nil)
	if st != 200 {
		t.Fatalf("GET %s: %d %v", path, st, body)
	}
	var joined []id.RoomID
	list, ok := body["joined"].([]any)
	if !ok {
		t.Fatalf("GET %s: no joined list: %v", path, body)
	}
	for _, r := range list {
		joined = append(joined, id.RoomID(r.(string)))
	}
	next, _ := body["next_batch"].(string)
	count, _ := body["count"].(float64)
	return joined, int(count), next
}

// TestMutualRooms checks GET /_matrix/client/v1/mutual_rooms: only rooms
// both users are joined to, in pages of 100 chained by next_batch, the
// unstable MSC2666 alias, and the 400s.
func TestMutualRooms(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		s := mxtest.Start(t, engine)
		alice, bob, carol := s.Client("ma"), s.Client("mb"), s.Client("mc")

		create := func(invite ...id.UserID) id.RoomID {
			t.Helper()
			resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Invite: invite})
			if err != nil {
				t.Fatal(err)
			}
			return resp.RoomID
		}
		var shared []id.RoomID
		for range 101 {
			room := create()
			if _, err := bob.JoinRoomByID(ctx, room); err != nil {
				t.Fatal(err)
			}
			shared = append(shared, room)
		}
		slices.Sort(shared)
		create(bob.UserID) // bob is only invited
		left := create()
		if _, err := bob.JoinRoomByID(ctx, left); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.LeaveRoom(ctx, left); err != nil {
			t.Fatal(err)
		}

		page1, count, next := mutualRooms(t, s, alice, "/v1/mutual_rooms", bob.UserID, "")
		if count != 101 || len(page1) != 100 || next == "" {
			t.Fatalf("first page: %d rooms, count %d, next_batch %q; want 100, 101, a token", len(page1), count, next)
		}
		page2, count, next2 := mutualRooms(t, s, alice, "/v1/mutual_rooms", bob.UserID, next)
		if count != 101 || len(page2) != 1 || next2 != "" {
			t.Fatalf("second page: %v, count %d, next_batch %q", page2, count, next2)
		}
		if got := append(page1, page2...); !slices.Equal(got, shared) {
			t.Errorf("pages = %v\nwant %v", got, shared)
		}
		// The other side sees the same rooms, through Synapse's unstable path.
		all, _, _ := mutualRooms(t, s, bob, "/unstable/uk.half-shot.msc2666/user/mutual_rooms", alice.UserID, "")
		if !slices.Equal(all, shared[:100]) {
			t.Errorf("unstable path: %d rooms", len(all))
		}
		if none, count, next := mutualRooms(t, s, alice, "/v1/mutual_rooms", carol.UserID, ""); len(none) != 0 || count != 0 || next != "" {
			t.Errorf("with carol: %v %d %q, want none", none, count, next)
		}
		if none, _, _ := mutualRooms(t, s, alice, "/v1/mutual_rooms", "@nobody:elsewhere.example", ""); len(none) != 0 {
			t.Errorf("with an unknown user: %v", none)
		}

		for _, c := range []struct{ what, query, code string }{
			{"yourself", "?user_id=" + url.QueryEscape(alice.UserID.String()), "M_INVALID_PARAM"},
			{"invalid user", "?user_id=alice", "M_INVALID_PARAM"},
			{"no user", "", "M_MISSING_PARAM"},
			{"bad from", "?user_id=" + url.QueryEscape(bob.UserID.String()) + "&from=xyz", "M_INVALID_PARAM"},
		} {
			st, body := acctReq(t, s, "GET", "/v1/mutual_rooms"+c.query, alice.AccessToken, nil)
			acctWantErr(t, c.what, st, body, 400, c.code)
		}
		st, body := acctReq(t, s, "GET", "/v1/mutual_rooms?user_id=@x:y", "", nil)
		acctWantErr(t, "no token", st, body, 401, "M_MISSING_TOKEN")
	})
}
