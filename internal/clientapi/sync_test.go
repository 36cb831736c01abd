package clientapi_test

// End-to-end tests of /sync (sync.yaml) and filters (filter.yaml): gaps
// and their state, left rooms, state_after, ignored users, the federation
// event format, filter validation and the unsigned fields of timeline
// events.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// rawEvent is an event of a sync response, decoded loosely so that tests
// see exactly the fields the server sent.
type rawEvent struct {
	Type     string          `json:"type"`
	EventID  id.EventID      `json:"event_id"`
	Sender   id.UserID       `json:"sender"`
	StateKey *string         `json:"state_key"`
	Content  map[string]any  `json:"content"`
	Unsigned map[string]any  `json:"unsigned"`
	Raw      json.RawMessage `json:"-"`
}

type rawEvents struct {
	Events []rawEvent `json:"events"`
}

func (l *rawEvents) UnmarshalJSON(b []byte) error {
	var raw struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	l.Events = make([]rawEvent, len(raw.Events))
	for i, r := range raw.Events {
		if err := json.Unmarshal(r, &l.Events[i]); err != nil {
			return err
		}
		l.Events[i].Raw = r
	}
	return nil
}

// member returns the last member event of user in the list, or nil.
func (l *rawEvents) member(user id.UserID) *rawEvent {
	for i := len(l.Events) - 1; i >= 0; i-- {
		if ev := l.Events[i]; ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == user.String() {
			return &l.Events[i]
		}
	}
	return nil
}

// ofType returns the events of type typ in the list.
func (l *rawEvents) ofType(typ string) []rawEvent {
	var out []rawEvent
	for _, ev := range l.Events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

type rawRoom struct {
	State      *rawEvents `json:"state"`
	StateAfter *rawEvents `json:"state_after"`
	Timeline   struct {
		rawEvents
		Limited   bool   `json:"limited"`
		PrevBatch string `json:"prev_batch"`
	} `json:"timeline"`
}

// UnmarshalJSON is needed because the embedded rawEvents' method would
// otherwise decode the whole timeline object.
func (r *rawRoom) UnmarshalJSON(b []byte) error {
	var top struct {
		State      *rawEvents      `json:"state"`
		StateAfter *rawEvents      `json:"state_after"`
		Timeline   json.RawMessage `json:"timeline"`
	}
	if err := json.Unmarshal(b, &top); err != nil {
		return err
	}
	r.State, r.StateAfter = top.State, top.StateAfter
	if len(top.Timeline) == 0 {
		return nil
	}
	var tl struct {
		Limited   bool   `json:"limited"`
		PrevBatch string `json:"prev_batch"`
	}
	if err := json.Unmarshal(top.Timeline, &tl); err != nil {
		return err
	}
	r.Timeline.Limited, r.Timeline.PrevBatch = tl.Limited, tl.PrevBatch
	return json.Unmarshal(top.Timeline, &r.Timeline.rawEvents)
}

type rawSyncResp struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join   map[id.RoomID]rawRoom         `json:"join"`
		Leave  map[id.RoomID]rawRoom         `json:"leave"`
		Invite map[id.RoomID]json.RawMessage `json:"invite"`
	} `json:"rooms"`
}

// rawSync runs GET /sync with the query parameters as cli.
func rawSync(t *testing.T, cli *mautrix.Client, query map[string]string) *rawSyncResp {
	t.Helper()
	resp, err := tryRawSync(cli, query)
	if err != nil {
		t.Fatalf("%s: sync %v: %v", cli.UserID, query, err)
	}
	return resp
}

func tryRawSync(cli *mautrix.Client, query map[string]string) (*rawSyncResp, error) {
	if query == nil {
		query = map[string]string{}
	}
	query["timeout"] = "0"
	var resp rawSyncResp
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, query)
	if _, err := cli.MakeRequest(context.Background(), http.MethodGet, u, nil, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// syncRoom starts a server with alice's public room and bob joined to it.
func syncRoom(t *testing.T, engine string) (srv *mxtest.Server, alice, bob *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	srv, alice, bob, _, roomID = ephRoom(t, engine)
	return srv, alice, bob, roomID
}

func mustSend(t *testing.T, cli *mautrix.Client, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	resp, err := cli.SendText(context.Background(), roomID, body)
	if err != nil {
		t.Fatalf("%s sends %q: %v", cli.UserID, body, err)
	}
	return resp.EventID
}

func bodies(evs []rawEvent) []string {
	var out []string
	for _, ev := range evs {
		if b, ok := ev.Content["body"].(string); ok && ev.Type == "m.room.message" {
			out = append(out, b)
		}
	}
	return out
}

// A room joined since the last sync starts after a gap: limited, with a
// prev_batch that /messages pages back from. A profile change of a user
// already joined is no new join. And a gap of more events than the limit
// is limited too.
func TestSyncGapsAreLimited(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv, alice, _, roomID := syncRoom(t, engine)
		carol := srv.Client("carol")
		for i := range 3 {
			mustSend(t, alice, roomID, fmt.Sprintf("before %d", i))
		}
		start := rawSync(t, carol, nil)
		if _, err := carol.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		joined := rawSync(t, carol, map[string]string{"since": start.NextBatch, "filter": `{"room":{"timeline":{"limit":2}}}`})
		jr, ok := joined.Rooms.Join[roomID]
		if !ok {
			t.Fatal("new join missing from rooms.join")
		}
		if !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
			t.Errorf("new join: limited=%v prev_batch=%q, want limited with a prev_batch", jr.Timeline.Limited, jr.Timeline.PrevBatch)
		}
		older, err := carol.Messages(ctx, roomID, jr.Timeline.PrevBatch, "", mautrix.DirectionBackward, nil, 10)
		if err != nil {
			t.Fatalf("messages from the new join's prev_batch: %v", err)
		}
		var got []string
		for _, ev := range older.Chunk {
			if ev.Type == event.EventMessage {
				got = append(got, ev.Content.Raw["body"].(string))
			}
		}
		if want := []string{"before 1", "before 0"}; !slices.Equal(got, want) {
			t.Errorf("messages before the new join's timeline = %v, want %v", got, want)
		}
		// Even a short history is limited when the join is new.
		dave := srv.Client("dave")
		start = rawSync(t, dave, nil)
		if _, err := dave.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		jr = rawSync(t, dave, map[string]string{"since": start.NextBatch, "filter": `{"room":{"timeline":{"limit":50}}}`}).Rooms.Join[roomID]
		if !jr.Timeline.Limited {
			t.Error("new join with its whole history in the timeline: limited=false, want true")
		}

		// A display name change is not a new join: no gap, no full state.
		prev := rawSync(t, carol, map[string]string{"since": joined.NextBatch}).NextBatch
		if err := carol.SetDisplayName(ctx, "Carol"); err != nil {
			t.Fatal(err)
		}
		renamed := rawSync(t, carol, map[string]string{"since": prev})
		jr = renamed.Rooms.Join[roomID]
		if jr.Timeline.Limited || len(jr.Timeline.Events) != 1 || len(jr.State.Events) != 0 {
			t.Errorf("profile change: limited=%v, %d timeline events, %d state events; want one event, no gap",
				jr.Timeline.Limited, len(jr.Timeline.Events), len(jr.State.Events))
		}
	})
}

// Left rooms carry their state like joined ones: with a timeline limit of
// 0 the leave (kick, ban) is in the state section.
func TestSyncLeftRoomWithoutTimeline(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv, alice, bob, roomID := syncRoom(t, engine)
		carol := srv.Client("carol")
		if _, err := carol.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		const zero = `{"room":{"timeline":{"limit":0}}}`
		cases := []struct {
			name       string
			cli        *mautrix.Client
			leave      func() error
			membership string
		}{
			{"kick", bob, func() error {
				_, err := alice.KickUser(ctx, roomID, &mautrix.ReqKickUser{UserID: bob.UserID, Reason: "out"})
				return err
			}, "leave"},
			{"ban", carol, func() error {
				_, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: carol.UserID})
				return err
			}, "ban"},
		}
		for _, tc := range cases {
			before := rawSync(t, tc.cli, nil)
			mustSend(t, alice, roomID, "while still there")
			if err := tc.leave(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			resp := rawSync(t, tc.cli, map[string]string{"since": before.NextBatch, "filter": zero})
			lr, ok := resp.Rooms.Leave[roomID]
			if !ok {
				t.Fatalf("%s: room missing from rooms.leave", tc.name)
			}
			if len(lr.Timeline.Events) != 0 {
				t.Errorf("%s: %d timeline events with limit 0", tc.name, len(lr.Timeline.Events))
			}
			m := lr.State.member(tc.cli.UserID)
			if m == nil || m.Content["membership"] != tc.membership {
				t.Errorf("%s: state section %v lacks the user's %s", tc.name, lr.State, tc.membership)
			}
		}
	})
}

// A gappy sync's state holds every change in the gap; with lazy-loaded
// members that includes member changes of users who sent nothing in the
// timeline, and the member events of the timeline's senders, but not the
// unchanged members of anyone else.
func TestSyncGapStateWithLazyMembers(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv, alice, bob, roomID := syncRoom(t, engine)
		carol, dave := srv.Client("carol"), srv.Client("dave")
		if _, err := carol.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		before := rawSync(t, bob, nil)
		// In the gap: dave joins and the topic changes.
		if _, err := dave.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateTopic, "", map[string]any{"topic": "gap topic"}); err != nil {
			t.Fatal(err)
		}
		for i := range 8 {
			mustSend(t, alice, roomID, fmt.Sprintf("gap %d", i))
		}
		for _, filter := range []string{
			`{"room":{"timeline":{"limit":3},"state":{"lazy_load_members":true}}}`,
			`{"room":{"timeline":{"limit":3}}}`,
		} {
			jr := rawSync(t, bob, map[string]string{"since": before.NextBatch, "filter": filter}).Rooms.Join[roomID]
			if !jr.Timeline.Limited {
				t.Fatalf("%s: gap not limited", filter)
			}
			if len(jr.State.ofType("m.room.topic")) != 1 {
				t.Errorf("%s: state lacks the topic set in the gap", filter)
			}
			if m := jr.State.member(dave.UserID); m == nil || m.Content["membership"] != "join" {
				t.Errorf("%s: state lacks dave's join in the gap", filter)
			}
			if jr.State.member(alice.UserID) == nil && strings.Contains(filter, "lazy") {
				t.Errorf("%s: state lacks the member event of the timeline's sender", filter)
			}
			if jr.State.member(carol.UserID) != nil {
				t.Errorf("%s: state repeats carol's member event, unchanged since the last sync", filter)
			}
			for _, ev := range jr.State.Events {
				if ev.Type == "m.room.create" || ev.Type == "m.room.power_levels" {
					t.Errorf("%s: state repeats %s, unchanged since the last sync", filter, ev.Type)
				}
			}
		}
	})
}

// Invites from ignored users are not shown, and their messages are left
// out of timelines, but not their state events.
func TestSyncIgnoredUsers(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv, alice, bob, roomID := syncRoom(t, engine)
		mallory := srv.Client("mallory")
		if _, err := mallory.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if err := bob.SetAccountData(ctx, "m.ignored_user_list", map[string]any{
			"ignored_users": map[string]any{mallory.UserID.String(): map[string]any{}},
		}); err != nil {
			t.Fatal(err)
		}
		before := rawSync(t, bob, nil)
		mustSend(t, mallory, roomID, "spam")
		mustSend(t, alice, roomID, "hello")
		if err := mallory.SetDisplayName(ctx, "Mallory"); err != nil {
			t.Fatal(err)
		}
		other, err := mallory.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		for name, since := range map[string]string{"incremental": before.NextBatch, "initial": ""} {
			q := map[string]string{}
			if since != "" {
				q["since"] = since
			}
			resp := rawSync(t, bob, q)
			jr := resp.Rooms.Join[roomID]
			if got := bodies(jr.Timeline.Events); slices.Contains(got, "spam") || !slices.Contains(got, "hello") {
				t.Errorf("%s: timeline messages %v, want alice's and not mallory's", name, got)
			}
			if m := jr.Timeline.member(mallory.UserID); m == nil {
				t.Errorf("%s: the ignored user's member event is missing from the timeline", name)
			}
			if _, ok := resp.Rooms.Invite[other.RoomID]; ok {
				t.Errorf("%s: invite from an ignored user shown", name)
			}
		}
		// Invites from others still show.
		third, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rawSync(t, bob, map[string]string{"since": before.NextBatch}).Rooms.Invite[third.RoomID]; !ok {
			t.Error("invite from a user not ignored is missing")
		}
	})
}

// use_state_after replaces state with state_after: the state at the end of
// the timeline, including the timeline's own state events.
func TestSyncUseStateAfter(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		_, alice, bob, roomID := syncRoom(t, engine)
		initial := rawSync(t, bob, map[string]string{"use_state_after": "true", "filter": `{"room":{"timeline":{"limit":1}}}`})
		jr := initial.Rooms.Join[roomID]
		if jr.State != nil || jr.StateAfter == nil {
			t.Fatalf("initial sync: state=%v state_after=%v, want only state_after", jr.State != nil, jr.StateAfter != nil)
		}
		if jr.StateAfter.member(bob.UserID) == nil || len(jr.StateAfter.ofType("m.room.create")) != 1 {
			t.Errorf("initial state_after lacks the room's state: %d events", len(jr.StateAfter.Events))
		}
		// The last event (bob's join) is in the timeline and in state_after.
		if len(jr.Timeline.Events) != 1 || jr.StateAfter.member(bob.UserID).EventID != jr.Timeline.Events[0].EventID {
			t.Errorf("state_after does not hold the timeline's state event")
		}

		if _, err := alice.SendStateEvent(ctx, roomID, event.StateRoomName, "", map[string]any{"name": "after"}); err != nil {
			t.Fatal(err)
		}
		mustSend(t, alice, roomID, "after the name")
		inc := rawSync(t, bob, map[string]string{"use_state_after": "true", "since": initial.NextBatch})
		jr = inc.Rooms.Join[roomID]
		if jr.State != nil || jr.StateAfter == nil {
			t.Fatalf("incremental sync: state=%v state_after=%v, want only state_after", jr.State != nil, jr.StateAfter != nil)
		}
		if names := jr.StateAfter.ofType("m.room.name"); len(names) != 1 || names[0].Content["name"] != "after" {
			t.Errorf("incremental state_after = %v, want the name set in the timeline", jr.StateAfter.Events)
		}
		if len(jr.StateAfter.Events) != 1 {
			t.Errorf("incremental state_after has %d events, want just the name", len(jr.StateAfter.Events))
		}
		// Without the parameter: state, and no state_after.
		plain := rawSync(t, bob, map[string]string{"since": initial.NextBatch})
		if jr := plain.Rooms.Join[roomID]; jr.State == nil || jr.StateAfter != nil {
			t.Errorf("default sync: state=%v state_after=%v, want only state", jr.State != nil, jr.StateAfter != nil)
		}
		if _, err := tryRawSync(bob, map[string]string{"use_state_after": "yes"}); err == nil {
			t.Error("use_state_after=yes accepted")
		}
	})
}

// A filter's event_format "federation" returns events as PDUs.
func TestSyncFederationEventFormat(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		_, alice, bob, roomID := syncRoom(t, engine)
		mustSend(t, alice, roomID, "as a PDU")
		resp := rawSync(t, bob, map[string]string{"filter": `{"event_format":"federation","room":{"timeline":{"limit":1}}}`})
		jr := resp.Rooms.Join[roomID]
		if len(jr.Timeline.Events) != 1 {
			t.Fatalf("%d timeline events, want 1", len(jr.Timeline.Events))
		}
		for _, ev := range append(jr.Timeline.Events, jr.State.Events...) {
			var pdu map[string]json.RawMessage
			_ = json.Unmarshal(ev.Raw, &pdu)
			for _, k := range []string{"auth_events", "prev_events", "depth", "hashes", "signatures", "room_id", "event_id"} {
				if _, ok := pdu[k]; !ok {
					t.Errorf("%s event in federation format lacks %s: %s", ev.Type, k, ev.Raw)
				}
			}
		}
		plain := rawSync(t, bob, map[string]string{"filter": `{"room":{"timeline":{"limit":1}}}`})
		var ce map[string]json.RawMessage
		_ = json.Unmarshal(plain.Rooms.Join[roomID].Timeline.Events[0].Raw, &ce)
		if _, ok := ce["auth_events"]; ok {
			t.Errorf("client format has auth_events: %s", plain.Rooms.Join[roomID].Timeline.Events[0].Raw)
		}
	})
}

// Filters naming malformed room or user IDs, or with fields of the wrong
// type, are refused by POST /filter and inline on /sync.
func TestFilterValidation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		_, _, bob, _ := syncRoom(t, engine)
		bad := map[string]string{
			"room rooms":             `{"room":{"rooms":["not-a-room"]}}`,
			"room not_rooms":         `{"room":{"not_rooms":["#alias:localhost"]}}`,
			"timeline rooms":         `{"room":{"timeline":{"rooms":["localhost"]}}}`,
			"timeline senders":       `{"room":{"timeline":{"senders":["bob"]}}}`,
			"state not_senders":      `{"room":{"state":{"not_senders":["!room:localhost"]}}}`,
			"presence senders":       `{"presence":{"senders":["@nocolon"]}}`,
			"account_data senders":   `{"account_data":{"not_senders":[""]}}`,
			"limit type":             `{"room":{"timeline":{"limit":"ten"}}}`,
			"rooms type":             `{"room":{"rooms":"!a:localhost"}}`,
			"lazy_load_members type": `{"room":{"state":{"lazy_load_members":"yes"}}}`,
			"event_format":           `{"event_format":"xml"}`,
		}
		for name, f := range bad {
			var body map[string]any
			if err := json.Unmarshal([]byte(f), &body); err != nil {
				t.Fatal(err)
			}
			_, err := bob.MakeRequest(ctx, http.MethodPost, bob.BuildClientURL("v3", "user", bob.UserID, "filter"), body, nil)
			ephWantErr(t, "POST filter "+name, err, 400, "M_BAD_JSON")
			_, err = tryRawSync(bob, map[string]string{"filter": f})
			ephWantErr(t, "inline filter "+name, err, 400, "M_BAD_JSON")
		}
		good := `{"room":{"rooms":["!abc:localhost","!v12roomid"],"timeline":{"senders":["@bob:localhost"],"not_senders":["@x:other.example"]}}}`
		var body map[string]any
		_ = json.Unmarshal([]byte(good), &body)
		var created struct {
			FilterID string `json:"filter_id"`
		}
		if _, err := bob.MakeRequest(ctx, http.MethodPost, bob.BuildClientURL("v3", "user", bob.UserID, "filter"), body, &created); err != nil || created.FilterID == "" {
			t.Errorf("valid filter refused: %v", err)
		}
		if _, err := tryRawSync(bob, map[string]string{"filter": good}); err != nil {
			t.Errorf("valid inline filter refused: %v", err)
		}
	})
}

// Timeline events carry the user's membership at them
// (unsigned.membership), and member events that replaced another carry
// its sender (unsigned.prev_sender) with prev_content.
func TestSyncUnsignedMembershipAndPrevSender(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv, alice, _, roomID := syncRoom(t, engine)
		carol := srv.Client("carol")
		mustSend(t, alice, roomID, "before the invite")
		if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
			t.Fatal(err)
		}
		mustSend(t, alice, roomID, "while invited")
		start := rawSync(t, carol, nil)
		if _, err := carol.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		mustSend(t, alice, roomID, "after the join")
		jr := rawSync(t, carol, map[string]string{"since": start.NextBatch, "filter": `{"room":{"timeline":{"limit":50}}}`}).Rooms.Join[roomID]
		want := map[string]string{"before the invite": "leave", "while invited": "invite", "after the join": "join"}
		for _, ev := range jr.Timeline.Events {
			if b, ok := ev.Content["body"].(string); ok {
				if got := ev.Unsigned["membership"]; got != want[b] {
					t.Errorf("%q: unsigned.membership = %v, want %s", b, got, want[b])
				}
			}
		}
		join := jr.Timeline.member(carol.UserID)
		if join == nil {
			t.Fatal("carol's join missing from the timeline")
		}
		if join.Unsigned["membership"] != "join" {
			t.Errorf("carol's join: unsigned.membership = %v, want join", join.Unsigned["membership"])
		}
		if join.Unsigned["prev_sender"] != alice.UserID.String() {
			t.Errorf("carol's join replacing alice's invite: unsigned = %v, want prev_sender %s", join.Unsigned, alice.UserID)
		}
		if pc, _ := join.Unsigned["prev_content"].(map[string]any); pc["membership"] != "invite" {
			t.Errorf("carol's join: prev_content = %v, want the invite", join.Unsigned["prev_content"])
		}
		// An incremental sync: every event is at a join.
		next := rawSync(t, carol, map[string]string{"since": start.NextBatch})
		mustSend(t, alice, roomID, "later")
		jr = rawSync(t, carol, map[string]string{"since": next.NextBatch}).Rooms.Join[roomID]
		if len(jr.Timeline.Events) != 1 || jr.Timeline.Events[0].Unsigned["membership"] != "join" {
			t.Errorf("incremental timeline %v: want one event at membership join", jr.Timeline.Events)
		}
		// The leave, in the left room's timeline.
		if _, err := carol.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		lr := rawSync(t, carol, map[string]string{"since": next.NextBatch}).Rooms.Leave[roomID]
		leave := lr.Timeline.member(carol.UserID)
		if leave == nil || leave.Unsigned["membership"] != "leave" || leave.Unsigned["prev_sender"] != carol.UserID.String() {
			t.Errorf("leave in the timeline: %+v, want membership leave and prev_sender carol", leave)
		}
		for _, ev := range lr.Timeline.Events {
			if ev.EventID != leave.EventID && ev.Unsigned["membership"] != "join" {
				t.Errorf("%s before the leave: unsigned.membership = %v, want join", ev.Type, ev.Unsigned["membership"])
			}
		}
	})
}
