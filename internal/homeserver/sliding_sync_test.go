package homeserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// ssRoom is the part of a sliding sync room the tests read.
type ssRoom struct {
	Name          string            `json:"name"`
	Initial       bool              `json:"initial"`
	IsDM          bool              `json:"is_dm"`
	BumpStamp     int64             `json:"bump_stamp"`
	NumLive       *int              `json:"num_live"`
	Limited       bool              `json:"limited"`
	JoinedCount   *int              `json:"joined_count"`
	Timeline      []json.RawMessage `json:"timeline"`
	RequiredState []struct {
		Type     string `json:"type"`
		StateKey string `json:"state_key"`
	} `json:"required_state"`
	InviteState []json.RawMessage `json:"invite_state"`
}

type ssResp struct {
	Pos        string                         `json:"pos"`
	Lists      map[string]struct{ Count int } `json:"lists"`
	Rooms      map[id.RoomID]ssRoom           `json:"rooms"`
	Extensions struct {
		ToDevice *struct {
			NextBatch string `json:"next_batch"`
			Events    []struct {
				Type    string          `json:"type"`
				Content json.RawMessage `json:"content"`
			} `json:"events"`
		} `json:"to_device"`
		E2EE *struct {
			DeviceLists struct {
				Changed []id.UserID `json:"changed"`
			} `json:"device_lists"`
			OTKCount map[string]int `json:"device_one_time_keys_count"`
		} `json:"e2ee"`
	} `json:"extensions"`
}

// slidingSync makes one raw sliding sync request.
func slidingSync(cli *mautrix.Client, pos string, timeoutMS int, body any) (*ssResp, error) {
	q := map[string]string{"timeout": fmt.Sprint(timeoutMS)}
	if pos != "" {
		q["pos"] = pos
	}
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath{"unstable", "org.matrix.simplified_msc3575", "sync"}, q)
	var resp ssResp
	if _, err := cli.MakeRequest(context.Background(), http.MethodPost, u, body, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func mustSlidingSync(t *testing.T, cli *mautrix.Client, pos string, timeoutMS int, body any) *ssResp {
	t.Helper()
	resp, err := slidingSync(cli, pos, timeoutMS, body)
	if err != nil {
		t.Fatalf("sliding sync (pos %q): %v", pos, err)
	}
	return resp
}

func list(ranges [][]int, limit int, required [][]string, filters map[string]any) map[string]any {
	l := map[string]any{"ranges": ranges, "timeline_limit": limit, "required_state": required}
	if filters != nil {
		l["filters"] = filters
	}
	return l
}

func timelineBodies(t *testing.T, r ssRoom) []string {
	t.Helper()
	var out []string
	for _, raw := range r.Timeline {
		var ev struct {
			Type    string `json:"type"`
			Content struct {
				Body string `json:"body"`
			} `json:"content"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type == "m.room.message" {
			out = append(out, ev.Content.Body)
		}
	}
	return out
}

// TestSlidingSyncWindowsByRecency: a client in 300 rooms gets the 20 most
// recent, then the next 20; a message moves its room to the top, and a
// room the connection already has comes back with only the new message.
func TestSlidingSyncWindowsByRecency(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		rooms := make([]id.RoomID, 300)
		for i := range rooms {
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: fmt.Sprintf("r%03d", i)})
			if err != nil {
				t.Fatal(err)
			}
			rooms[i] = created.RoomID
		}
		body := func(ranges [][]int) map[string]any {
			return map[string]any{"lists": map[string]any{"all": list(ranges, 1, [][]string{{"m.room.name", ""}}, nil)}}
		}
		want := func(what string, resp *ssResp, ids []id.RoomID) {
			t.Helper()
			var got []id.RoomID
			for r := range resp.Rooms {
				got = append(got, r)
			}
			slices.Sort(got)
			ids = slices.Clone(ids)
			slices.Sort(ids)
			if !slices.Equal(got, ids) {
				t.Fatalf("%s: got %d rooms %v, want %d %v", what, len(got), got, len(ids), ids)
			}
		}
		newest := func(from, to int) []id.RoomID { // rooms[299-from] down to rooms[299-to]
			var out []id.RoomID
			for i := from; i <= to; i++ {
				out = append(out, rooms[len(rooms)-1-i])
			}
			return out
		}

		first := mustSlidingSync(t, alice, "", 0, body([][]int{{0, 19}}))
		if first.Lists["all"].Count != 300 {
			t.Fatalf("list count %d, want 300", first.Lists["all"].Count)
		}
		want("first window", first, newest(0, 19))
		top := first.Rooms[rooms[299]]
		if !top.Initial || top.Name != "r299" || len(top.RequiredState) != 1 || top.RequiredState[0].Type != "m.room.name" {
			t.Fatalf("first window, newest room: %+v, want initial, named r299, its name event as required state", top)
		}
		if top.BumpStamp <= first.Rooms[rooms[280]].BumpStamp {
			t.Fatalf("bump_stamp of the newest room %d not above the 20th's %d", top.BumpStamp, first.Rooms[rooms[280]].BumpStamp)
		}

		second := mustSlidingSync(t, alice, first.Pos, 0, body([][]int{{20, 39}}))
		want("next range", second, newest(20, 39))

		// A message in the oldest room moves it to the top: the window
		// [0, 19] now starts with it, and it is new to the connection.
		if _, err := alice.SendText(ctx, rooms[0], "oldest wakes"); err != nil {
			t.Fatal(err)
		}
		third := mustSlidingSync(t, alice, second.Pos, 10000, body([][]int{{0, 19}}))
		r0, ok := third.Rooms[rooms[0]]
		if !ok || !r0.Initial || !slices.Equal(timelineBodies(t, r0), []string{"oldest wakes"}) {
			t.Fatalf("after a message in the oldest room: %+v (present %v), want it initial with the message", r0, ok)
		}
		if r0.BumpStamp <= top.BumpStamp {
			t.Fatalf("bump_stamp %d of the woken room not above %d", r0.BumpStamp, top.BumpStamp)
		}
		// The newest room (already sent) is still in the window, and
		// unchanged, so it is not repeated.
		if _, ok := third.Rooms[rooms[299]]; ok {
			t.Fatalf("unchanged room r299 sent again")
		}

		// A room the connection has comes back as a delta, woken by the
		// notifier while the request waits.
		done := make(chan *ssResp, 1)
		go func() {
			resp, err := slidingSync(alice, third.Pos, 20000, body([][]int{{0, 19}}))
			if err != nil {
				t.Error(err)
			}
			done <- resp
		}()
		if _, err := alice.SendText(ctx, rooms[299], "delta"); err != nil {
			t.Fatal(err)
		}
		fourth := <-done
		if fourth == nil {
			t.FailNow()
		}
		d, ok := fourth.Rooms[rooms[299]]
		if !ok || d.Initial || len(d.RequiredState) != 0 || d.Name != "" {
			t.Fatalf("delta of r299: %+v (present %v), want no initial, name or required state", d, ok)
		}
		if got := timelineBodies(t, d); !slices.Equal(got, []string{"delta"}) || d.NumLive == nil || *d.NumLive != 1 {
			t.Fatalf("delta of r299: timeline %v num_live %v, want [delta] and 1", got, d.NumLive)
		}
		if len(fourth.Rooms) != 1 {
			t.Fatalf("delta response has %d rooms, want 1", len(fourth.Rooms))
		}
	})
}

// TestSlidingSyncRequiredState: $LAZY gives the members who sent the
// timeline's events, $ME the user's own member event, "*" every key.
func TestSlidingSyncRequiredState(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		roomID := publicRoom(t, alice, "", bob, carol)
		if _, err := bob.SendText(ctx, roomID, "from bob"); err != nil {
			t.Fatal(err)
		}
		members := func(required [][]string) []string {
			t.Helper()
			resp := mustSlidingSync(t, alice, "", 0, map[string]any{"lists": map[string]any{"l": list([][]int{{0, 0}}, 1, required, nil)}})
			var out []string
			for _, ev := range resp.Rooms[roomID].RequiredState {
				if ev.Type == "m.room.member" {
					out = append(out, ev.StateKey)
				}
			}
			slices.Sort(out)
			return out
		}
		if got := members([][]string{{"m.room.member", "$LAZY"}}); !slices.Equal(got, []string{bob.UserID.String()}) {
			t.Errorf("$LAZY: members %v, want bob only", got)
		}
		if got := members([][]string{{"m.room.member", "$ME"}}); !slices.Equal(got, []string{alice.UserID.String()}) {
			t.Errorf("$ME: members %v, want alice only", got)
		}
		// Along a connection, a member event already sent is not sent
		// again; a new sender's is.
		lazy := map[string]any{"lists": map[string]any{"l": list([][]int{{0, 0}}, 1, [][]string{{"m.room.member", "$LAZY"}}, nil)}}
		pos := mustSlidingSync(t, alice, "", 0, lazy).Pos
		for _, step := range []struct {
			from *mautrix.Client
			want []string
		}{{bob, nil}, {carol, []string{carol.UserID.String()}}, {carol, nil}} {
			if _, err := step.from.SendText(ctx, roomID, "again"); err != nil {
				t.Fatal(err)
			}
			resp := mustSlidingSync(t, alice, pos, 5000, lazy)
			pos = resp.Pos
			var got []string
			for _, ev := range resp.Rooms[roomID].RequiredState {
				got = append(got, ev.StateKey)
			}
			if !slices.Equal(got, step.want) {
				t.Fatalf("delta after a message of %s: members %v, want %v", step.from.UserID, got, step.want)
			}
		}
		// A join in a gapless delta brings the joiner's member event.
		dave := srv.Client("dave")
		if _, err := dave.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		resp := mustSlidingSync(t, alice, pos, 5000, lazy)
		var got []string
		for _, ev := range resp.Rooms[roomID].RequiredState {
			got = append(got, ev.StateKey)
		}
		if !slices.Equal(got, []string{dave.UserID.String()}) {
			t.Fatalf("delta after dave joined: members %v, want dave", got)
		}
		all := []string{alice.UserID.String(), bob.UserID.String(), carol.UserID.String(), dave.UserID.String()}
		slices.Sort(all)
		if got := members([][]string{{"m.room.member", "*"}}); !slices.Equal(got, all) {
			t.Errorf("*: members %v, want %v", got, all)
		}
	})
}

// TestSlidingSyncFilters: a DM, an encrypted room, an invite and a space
// child are each chosen by the matching filter.
func TestSlidingSyncFilters(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		plain, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "plain"})
		if err != nil {
			t.Fatal(err)
		}
		dm, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{IsDirect: true, Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.SetAccountData(ctx, "m.direct", map[string][]id.RoomID{bob.UserID.String(): {dm.RoomID}}); err != nil {
			t.Fatal(err)
		}
		enc, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{InitialState: []*event.Event{{
			Type: event.StateEncryption, StateKey: new(string),
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}})
		if err != nil {
			t.Fatal(err)
		}
		invite, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{alice.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		space, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{CreationContent: map[string]any{"type": "m.space"}})
		if err != nil {
			t.Fatal(err)
		}
		child, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "child"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendStateEvent(ctx, space.RoomID, event.StateSpaceChild, child.RoomID.String(),
			map[string]any{"via": []string{srv.Config.ServerName}}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			filters map[string]any
			want    []id.RoomID
		}{
			{"is_dm", map[string]any{"is_dm": true}, []id.RoomID{dm.RoomID}},
			{"is_encrypted", map[string]any{"is_encrypted": true}, []id.RoomID{enc.RoomID}},
			{"is_invite", map[string]any{"is_invite": true}, []id.RoomID{invite.RoomID}},
			{"spaces", map[string]any{"spaces": []id.RoomID{space.RoomID}}, []id.RoomID{child.RoomID}},
			{"room_types", map[string]any{"room_types": []string{"m.space"}}, []id.RoomID{space.RoomID}},
			{"not_room_types", map[string]any{"not_room_types": []any{nil}}, []id.RoomID{space.RoomID}},
			{"none", nil, []id.RoomID{plain.RoomID, dm.RoomID, enc.RoomID, invite.RoomID, space.RoomID, child.RoomID}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				resp := mustSlidingSync(t, alice, "", 0, map[string]any{"lists": map[string]any{"l": list([][]int{{0, 99}}, 0, nil, tc.filters)}})
				var got []id.RoomID
				for r := range resp.Rooms {
					got = append(got, r)
				}
				slices.Sort(got)
				want := slices.Clone(tc.want)
				slices.Sort(want)
				if !slices.Equal(got, want) || resp.Lists["l"].Count != len(want) {
					t.Fatalf("rooms %v (count %d), want %v", got, resp.Lists["l"].Count, want)
				}
				if tc.name == "is_invite" && len(resp.Rooms[invite.RoomID].InviteState) == 0 {
					t.Fatalf("the invite has no invite_state")
				}
				if tc.name == "is_dm" && !resp.Rooms[dm.RoomID].IsDM {
					t.Fatalf("the DM is not marked is_dm")
				}
			})
		}

		// A room that stops being a DM comes again, with is_dm false.
		all := map[string]any{"lists": map[string]any{"l": list([][]int{{0, 99}}, 0, nil, nil)}}
		first := mustSlidingSync(t, alice, "", 0, all)
		if err := alice.SetAccountData(ctx, "m.direct", map[string][]id.RoomID{}); err != nil {
			t.Fatal(err)
		}
		next := mustSlidingSync(t, alice, first.Pos, 5000, all)
		if r, ok := next.Rooms[dm.RoomID]; !ok || r.IsDM || len(next.Rooms) != 1 {
			t.Fatalf("after m.direct dropped the DM: rooms %v, want only the DM, with is_dm false", next.Rooms)
		}
	})
}

// TestSlidingSyncExtensionsExactlyOnce chains requests, each from the
// previous pos and to-device next_batch, with a to-device message and a
// device list change between them: each arrives once, none is lost, and
// a request repeating a since gets the unacknowledged messages again.
func TestSlidingSyncExtensionsExactlyOnce(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		publicRoom(t, alice, "", bob)
		ext := func(since string) map[string]any {
			td := map[string]any{"enabled": true}
			if since != "" {
				td["since"] = since
			}
			return map[string]any{"extensions": map[string]any{"to_device": td, "e2ee": map[string]any{"enabled": true}}}
		}
		resp := mustSlidingSync(t, alice, "", 0, ext(""))
		if resp.Extensions.ToDevice == nil || resp.Extensions.E2EE == nil {
			t.Fatalf("extensions missing: %+v", resp.Extensions)
		}
		pos, since := resp.Pos, resp.Extensions.ToDevice.NextBatch
		seen := map[string]int{}
		password := "password-" + bob.UserID.Localpart()
		for i := range 5 {
			msg := fmt.Sprintf("m%d", i)
			req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
				alice.UserID: {alice.DeviceID: {Raw: map[string]any{"n": msg}}}}}
			if _, err := bob.MakeRequest(ctx, "PUT", bob.BuildClientURL("v3", "sendToDevice", "org.example.ping", "t"+msg), req, nil); err != nil {
				t.Fatal(err)
			}
			if i == 2 {
				srv.Login(bob.UserID, password) // a new device: bob's device list changes
			}
			got := mustSlidingSync(t, alice, pos, 10000, ext(since))
			var here []string
			for _, ev := range got.Extensions.ToDevice.Events {
				var c struct{ N string }
				_ = json.Unmarshal(ev.Content, &c)
				here = append(here, c.N)
				seen[c.N]++
			}
			if i == 0 {
				// Asking again from the same since repeats what it has
				// not acknowledged.
				again := mustSlidingSync(t, alice, pos, 0, ext(since))
				if len(again.Extensions.ToDevice.Events) != len(here) {
					t.Fatalf("repeated since: %d messages, want the %d unacknowledged", len(again.Extensions.ToDevice.Events), len(here))
				}
			}
			if i == 2 && !slices.Contains(got.Extensions.E2EE.DeviceLists.Changed, bob.UserID) {
				// The login and the message may land in two responses.
				got2 := mustSlidingSync(t, alice, got.Pos, 10000, ext(got.Extensions.ToDevice.NextBatch))
				if !slices.Contains(got2.Extensions.E2EE.DeviceLists.Changed, bob.UserID) {
					t.Fatalf("bob's new device not in device_lists.changed: %v then %v",
						got.Extensions.E2EE.DeviceLists.Changed, got2.Extensions.E2EE.DeviceLists.Changed)
				}
				got = got2
			}
			pos, since = got.Pos, got.Extensions.ToDevice.NextBatch
		}
		final := mustSlidingSync(t, alice, pos, 0, ext(since))
		for _, ev := range final.Extensions.ToDevice.Events {
			var c struct{ N string }
			_ = json.Unmarshal(ev.Content, &c)
			seen[c.N]++
		}
		for i := range 5 {
			if n := seen[fmt.Sprintf("m%d", i)]; n != 1 {
				t.Errorf("message m%d delivered %d times along the chain, want once", i, n)
			}
		}
	})
}

// TestSlidingSyncUnknownPos: a pos the server never issued answers 400
// M_UNKNOWN_POS; the pos before the latest may be retried; after a
// restart a pos is rebuilt: its rooms come whole again, and the
// extensions enabled once (clients send "enabled" only in their first
// request) stay enabled.
func TestSlidingSyncUnknownPos(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		roomID := publicRoom(t, alice, "")
		versions, err := alice.Versions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !versions.UnstableFeatures["org.matrix.simplified_msc3575"] {
			t.Fatalf("/versions does not advertise org.matrix.simplified_msc3575: %v", versions.UnstableFeatures)
		}
		lists := map[string]any{"l": list([][]int{{0, 9}}, 1, nil, nil)}
		body := map[string]any{"lists": lists}
		first := mustSlidingSync(t, alice, "", 0, map[string]any{"lists": lists,
			"extensions": map[string]any{"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true}}})
		for _, pos := range []string{"garbage", "1_2_3_4_0"} {
			_, err := slidingSync(alice, pos, 0, body)
			var httpErr mautrix.HTTPError
			if !errors.As(err, &httpErr) || httpErr.RespError == nil || httpErr.RespError.ErrCode != "M_UNKNOWN_POS" || httpErr.Response.StatusCode != 400 {
				t.Fatalf("pos %q: %v, want 400 M_UNKNOWN_POS", pos, err)
			}
		}
		second := mustSlidingSync(t, alice, first.Pos, 0, body)
		if second.Extensions.ToDevice == nil || second.Extensions.E2EE == nil {
			t.Fatalf("extensions enabled in the first request are gone from the second: %+v", second.Extensions)
		}
		if _, err := slidingSync(alice, first.Pos, 0, body); err != nil {
			t.Fatalf("retrying the previous pos: %v", err)
		}
		// A new connection under the same conn_id replaces the old one.
		other := mustSlidingSync(t, alice, "", 0, map[string]any{"lists": lists, "conn_id": "other"})
		if _, err := slidingSync(alice, second.Pos, 0, body); err != nil {
			t.Fatalf("a connection of another conn_id replaced this one: %v", err)
		}
		mustSlidingSync(t, alice, "", 0, map[string]any{"lists": lists, "conn_id": "other"})
		if _, err := slidingSync(alice, other.Pos, 0, map[string]any{"lists": lists, "conn_id": "other"}); err == nil {
			t.Fatalf("the pos of a replaced connection still works")
		}

		if _, err := alice.SendText(ctx, roomID, "before restart"); err != nil {
			t.Fatal(err)
		}
		srv.Restart()
		after := mustSlidingSync(t, alice, second.Pos, 0, body)
		r, ok := after.Rooms[roomID]
		if !ok || !r.Initial || !slices.Equal(timelineBodies(t, r), []string{"before restart"}) {
			t.Fatalf("after a restart: %+v (present %v), want the room whole with the message", r, ok)
		}
		if after.Extensions.ToDevice == nil || after.Extensions.E2EE == nil {
			t.Fatalf("extensions lost across the restart: %+v", after.Extensions)
		}
	})
}

// ssExtResp is the part of the room extensions the tests read.
type ssExtResp struct {
	Pos        string `json:"pos"`
	Extensions struct {
		AccountData struct {
			Global []struct{ Type string }               `json:"global"`
			Rooms  map[id.RoomID][]struct{ Type string } `json:"rooms"`
		} `json:"account_data"`
		Receipts struct {
			Rooms map[id.RoomID]json.RawMessage `json:"rooms"`
		} `json:"receipts"`
		Typing struct {
			Rooms map[id.RoomID]struct {
				Content struct {
					UserIDs []id.UserID `json:"user_ids"`
				} `json:"content"`
			} `json:"rooms"`
		} `json:"typing"`
	} `json:"extensions"`
}

func slidingSyncExt(t *testing.T, cli *mautrix.Client, pos string, timeoutMS int, body any) *ssExtResp {
	t.Helper()
	q := map[string]string{"timeout": fmt.Sprint(timeoutMS)}
	if pos != "" {
		q["pos"] = pos
	}
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath{"unstable", "org.matrix.simplified_msc3575", "sync"}, q)
	var resp ssExtResp
	if _, err := cli.MakeRequest(context.Background(), http.MethodPost, u, body, &resp); err != nil {
		t.Fatalf("sliding sync: %v", err)
	}
	return &resp
}

// TestSlidingSyncRoomExtensions: receipts, typing and account data arrive
// for the rooms of the lists they are scoped to, and not for others.
func TestSlidingSyncRoomExtensions(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		roomID := publicRoom(t, alice, "", bob)
		body := func(lists []string) map[string]any {
			scoped := map[string]any{"enabled": true}
			if lists != nil {
				scoped["lists"] = lists
			}
			return map[string]any{
				"lists":      map[string]any{"l": list([][]int{{0, 9}}, 1, nil, nil)},
				"extensions": map[string]any{"receipts": scoped, "typing": scoped, "account_data": scoped},
			}
		}
		first := slidingSyncExt(t, alice, "", 0, body(nil))
		sent, err := bob.SendText(ctx, roomID, "read me")
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.SendReceipt(ctx, roomID, sent.EventID, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.UserTyping(ctx, roomID, true, 30*1e9); err != nil {
			t.Fatal(err)
		}
		if err := alice.SetAccountData(ctx, "org.example.global", map[string]any{"a": 1}); err != nil {
			t.Fatal(err)
		}
		if err := alice.SetRoomAccountData(ctx, roomID, "org.example.room", map[string]any{"a": 1}); err != nil {
			t.Fatal(err)
		}
		// The changes may land over several responses: follow the chain
		// until each has arrived.
		pos := first.Pos
		var gotReceipt, gotTyping, gotGlobal, gotRoom bool
		for range 10 {
			r := slidingSyncExt(t, alice, pos, 5000, body(nil))
			pos = r.Pos
			_, ok := r.Extensions.Receipts.Rooms[roomID]
			gotReceipt = gotReceipt || ok
			gotTyping = gotTyping || slices.Contains(r.Extensions.Typing.Rooms[roomID].Content.UserIDs, bob.UserID)
			for _, e := range r.Extensions.AccountData.Global {
				gotGlobal = gotGlobal || e.Type == "org.example.global"
			}
			for _, e := range r.Extensions.AccountData.Rooms[roomID] {
				gotRoom = gotRoom || e.Type == "org.example.room"
			}
			if gotReceipt && gotTyping && gotGlobal && gotRoom {
				break
			}
		}
		if !gotReceipt || !gotTyping || !gotGlobal || !gotRoom {
			t.Fatalf("receipt %v, typing %v, global account data %v, room account data %v: want all", gotReceipt, gotTyping, gotGlobal, gotRoom)
		}
		// Scoped to no list, a new connection gets none of the room's.
		none := slidingSyncExt(t, alice, "", 0, body([]string{}))
		if len(none.Extensions.Receipts.Rooms) != 0 || len(none.Extensions.Typing.Rooms) != 0 || len(none.Extensions.AccountData.Rooms) != 0 {
			t.Fatalf("extensions scoped to no list carry rooms: %+v", none.Extensions)
		}
		if len(none.Extensions.AccountData.Global) == 0 {
			t.Fatalf("global account data missing from a new connection")
		}
	})
}

// TestSlidingSyncSubscriptions: a subscribed room outside every window is
// sent, stays subscribed without being named again, and an unsubscribed
// one is no longer followed. Joining a room the connection had as an
// invite sends it whole.
func TestSlidingSyncSubscriptions(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		var rooms []id.RoomID
		for i := range 3 {
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: fmt.Sprintf("s%d", i)})
			if err != nil {
				t.Fatal(err)
			}
			rooms = append(rooms, created.RoomID)
		}
		lists := map[string]any{"top": list([][]int{{0, 0}}, 1, nil, nil)}
		first := mustSlidingSync(t, alice, "", 0, map[string]any{"lists": lists,
			"room_subscriptions": map[id.RoomID]any{rooms[0]: map[string]any{"timeline_limit": 2, "required_state": [][]string{{"m.room.name", ""}}}}})
		if _, ok := first.Rooms[rooms[0]]; !ok || len(first.Rooms) != 2 {
			t.Fatalf("first response rooms %v, want the newest and the subscribed one", first.Rooms)
		}
		if _, err := alice.SendText(ctx, rooms[1], "unwatched"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendText(ctx, rooms[0], "watched"); err != nil {
			t.Fatal(err)
		}
		// rooms[0] now has the newest message: it is both in the window
		// and subscribed. Follow with the window moved off it.
		second := mustSlidingSync(t, alice, first.Pos, 5000, map[string]any{"lists": map[string]any{"top": list([][]int{{2, 2}}, 1, nil, nil)}})
		r0, ok := second.Rooms[rooms[0]]
		if !ok || r0.Initial || !slices.Contains(timelineBodies(t, r0), "watched") {
			t.Fatalf("sticky subscription: %+v (present %v), want a delta with the message", r0, ok)
		}
		third := mustSlidingSync(t, alice, second.Pos, 0, map[string]any{"lists": map[string]any{"top": list([][]int{{2, 2}}, 1, nil, nil)},
			"unsubscribe_rooms": []id.RoomID{rooms[0]}})
		if _, err := alice.SendText(ctx, rooms[0], "after unsubscribing"); err != nil {
			t.Fatal(err)
		}
		fourth := mustSlidingSync(t, alice, third.Pos, 300, map[string]any{"lists": map[string]any{"top": list([][]int{{2, 2}}, 1, nil, nil)}})
		if _, ok := fourth.Rooms[rooms[0]]; ok {
			t.Fatalf("unsubscribed room still sent")
		}

		// An invite becomes a join: sent whole again.
		invited, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "inv", Invite: []id.UserID{alice.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		all := map[string]any{"lists": map[string]any{"all": list([][]int{{0, 9}}, 5, nil, nil)}}
		a := mustSlidingSync(t, alice, "", 0, all)
		if r := a.Rooms[invited.RoomID]; !r.Initial || len(r.InviteState) == 0 {
			t.Fatalf("the invite: %+v, want initial with invite_state", r)
		}
		if _, err := alice.JoinRoomByID(ctx, invited.RoomID); err != nil {
			t.Fatal(err)
		}
		b := mustSlidingSync(t, alice, a.Pos, 5000, all)
		if r, ok := b.Rooms[invited.RoomID]; !ok || !r.Initial || len(r.InviteState) != 0 || len(r.Timeline) == 0 {
			t.Fatalf("after joining: %+v (present %v), want it initial with a timeline and no invite_state", r, ok)
		}
	})
}

// TestSlidingSyncLeaves: a room the user was kicked from stays in the
// list (they may not have seen the kick), one they left themselves does
// not, unless the connection had it.
func TestSlidingSyncLeaves(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		kickedFrom := publicRoom(t, bob, "", alice)
		left := publicRoom(t, bob, "", alice)
		all := map[string]any{"lists": map[string]any{"all": list([][]int{{0, 9}}, 1, nil, nil)}}
		first := mustSlidingSync(t, alice, "", 0, all)
		if _, err := bob.KickUser(ctx, kickedFrom, &mautrix.ReqKickUser{UserID: alice.UserID}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.LeaveRoom(ctx, left); err != nil {
			t.Fatal(err)
		}
		// The connection had both: both come with the departure.
		var got map[id.RoomID]ssRoom = map[id.RoomID]ssRoom{}
		pos := first.Pos
		for range 5 {
			r := mustSlidingSync(t, alice, pos, 5000, all)
			pos = r.Pos
			for k, v := range r.Rooms {
				got[k] = v
			}
			if len(got) == 2 {
				break
			}
		}
		if _, ok := got[kickedFrom]; !ok {
			t.Errorf("the kick did not reach the connection")
		}
		if _, ok := got[left]; !ok {
			t.Errorf("the departure did not reach the connection that had the room")
		}
		fresh := mustSlidingSync(t, alice, "", 0, all)
		if _, ok := fresh.Rooms[kickedFrom]; !ok || fresh.Lists["all"].Count != 1 {
			t.Errorf("new connection: rooms %v count %d, want only the room alice was kicked from", fresh.Rooms, fresh.Lists["all"].Count)
		}
	})
}

// TestSlidingSyncLaterRevision: the MSC's later request forms (range,
// required_state as an object with lazy_members, is_invited, pos and
// timeout in the body) work like the earlier ones, and a larger timeline
// limit resends the latest events marked expanded_timeline.
func TestSlidingSyncLaterRevision(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		roomID := publicRoom(t, alice, "", bob)
		for i := range 3 {
			if _, err := bob.SendText(ctx, roomID, fmt.Sprintf("m%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		body := func(limit int, pos string) map[string]any {
			b := map[string]any{"lists": map[string]any{"l": map[string]any{
				"range": []int{0, 0}, "timeline_limit": limit,
				"required_state": map[string]any{"include": []any{map[string]any{"type": "m.room.create"}},
					"exclude": []any{}, "lazy_members": true},
				"filters": map[string]any{"is_invited": false},
			}}}
			if pos != "" {
				b["pos"] = pos
				b["timeout"] = 0
			}
			return b
		}
		first := mustSlidingSync(t, alice, "", 0, body(1, ""))
		r := first.Rooms[roomID]
		var types []string
		for _, ev := range r.RequiredState {
			types = append(types, ev.Type+"|"+ev.StateKey)
		}
		slices.Sort(types)
		want := []string{"m.room.create|", "m.room.member|" + bob.UserID.String()}
		if !slices.Equal(types, want) || !slices.Equal(timelineBodies(t, r), []string{"m2"}) {
			t.Fatalf("object required_state: state %v timeline %v, want %v and [m2]", types, timelineBodies(t, r), want)
		}
		var raw struct {
			Rooms map[id.RoomID]struct {
				Expanded bool `json:"expanded_timeline"`
			} `json:"rooms"`
		}
		u := alice.BuildURLWithQuery(mautrix.ClientURLPath{"unstable", "org.matrix.simplified_msc3575", "sync"}, nil)
		var second ssResp
		resp, err := alice.MakeRequest(ctx, http.MethodPost, u, body(3, first.Pos), &second)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(resp, &raw); err != nil {
			t.Fatal(err)
		}
		r = second.Rooms[roomID]
		if !raw.Rooms[roomID].Expanded || r.Initial || !slices.Equal(timelineBodies(t, r), []string{"m0", "m1", "m2"}) {
			t.Fatalf("after raising the limit: expanded %v initial %v timeline %v, want expanded, not initial, [m0 m1 m2]",
				raw.Rooms[roomID].Expanded, r.Initial, timelineBodies(t, r))
		}
	})
}

// TestSlidingSyncNotificationCounts: a message counts as unread in the
// room's entry, and the user's read receipt brings the room back with
// the count at zero, though no event came.
func TestSlidingSyncNotificationCounts(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		roomID := publicRoom(t, alice, "", bob)
		var counts struct {
			Pos   string `json:"pos"`
			Rooms map[id.RoomID]struct {
				NotificationCount *int `json:"notification_count"`
			} `json:"rooms"`
		}
		u := func(pos string) string {
			q := map[string]string{"timeout": "5000"}
			if pos != "" {
				q["pos"] = pos
			}
			return alice.BuildURLWithQuery(mautrix.ClientURLPath{"unstable", "org.matrix.simplified_msc3575", "sync"}, q)
		}
		body := map[string]any{"lists": map[string]any{"l": list([][]int{{0, 9}}, 1, nil, nil)}}
		if _, err := alice.MakeRequest(ctx, http.MethodPost, u(""), body, &counts); err != nil {
			t.Fatal(err)
		}
		sent, err := bob.SendText(ctx, roomID, "unread")
		if err != nil {
			t.Fatal(err)
		}
		// poll follows the connection until the room's count is want.
		poll := func(what string, want int) {
			t.Helper()
			for range 10 {
				pos := counts.Pos
				counts.Rooms = nil
				if _, err := alice.MakeRequest(ctx, http.MethodPost, u(pos), body, &counts); err != nil {
					t.Fatal(err)
				}
				if c := counts.Rooms[roomID].NotificationCount; c != nil && *c == want {
					return
				}
			}
			t.Fatalf("%s: the room's notification_count never became %d", what, want)
		}
		poll("after bob's message", 1)
		if err := alice.SendReceipt(ctx, roomID, sent.EventID, event.ReceiptTypeRead, nil); err != nil {
			t.Fatal(err)
		}
		poll("after alice read it", 0)
	})
}
