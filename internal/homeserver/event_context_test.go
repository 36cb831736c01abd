package homeserver_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// contextRaw asks /context with the raw query given, on the API version
// given ("v3" or "r0").
func contextRaw(ctx context.Context, cli *mautrix.Client, version string, roomID id.RoomID, evID id.EventID, query map[string]string) (*mautrix.RespContext, error) {
	var resp mautrix.RespContext
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath{version, "rooms", roomID, "context", evID}, query)
	_, err := cli.MakeRequest(ctx, http.MethodGet, u, nil, &resp)
	return &resp, err
}

// eventIDs returns the IDs of evs.
func eventIDs(evs []*event.Event) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// sendTexts sends one message per body and returns their event IDs.
func sendTexts(t *testing.T, cli *mautrix.Client, roomID id.RoomID, bodies ...string) []id.EventID {
	t.Helper()
	out := make([]id.EventID, len(bodies))
	for i, b := range bodies {
		resp, err := cli.SendText(context.Background(), roomID, b)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = resp.EventID
	}
	return out
}

// fullTimeline returns every event of the room the client may see, oldest
// first, from one /messages call.
func fullTimeline(t *testing.T, cli *mautrix.Client, roomID id.RoomID) []id.EventID {
	t.Helper()
	resp, err := cli.Messages(context.Background(), roomID, "", "", mautrix.DirectionBackward, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	ids := eventIDs(resp.Chunk)
	slices.Reverse(ids)
	return ids
}

// TestEventContext: /context returns the right neighbours on each side,
// splits the limit as Synapse does, returns the state at the last event,
// and its tokens go on with /messages without gaps or repeats.
func TestEventContext(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob := hs.Client("alice"), hs.Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		msgs := sendTexts(t, alice, roomID, "m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9")
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, sendTexts(t, alice, roomID, "m10", "m11")...)
		all := fullTimeline(t, alice, roomID)
		at := func(evID id.EventID) int { return slices.Index(all, evID) }

		// limit 4 around m5: m4, m3 before (newest first), m6, m7 after.
		resp, err := alice.Context(ctx, roomID, msgs[5], nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Event == nil || resp.Event.ID != msgs[5] || resp.Event.RoomID != roomID {
			t.Fatalf("event = %+v, want %s", resp.Event, msgs[5])
		}
		if got, want := eventIDs(resp.EventsBefore), []id.EventID{msgs[4], msgs[3]}; !slices.Equal(got, want) {
			t.Errorf("events_before = %v, want %v", got, want)
		}
		if got, want := eventIDs(resp.EventsAfter), []id.EventID{msgs[6], msgs[7]}; !slices.Equal(got, want) {
			t.Errorf("events_after = %v, want %v", got, want)
		}
		// The state at m7: bob had not joined yet.
		var hasCreate, hasAlice, hasBob bool
		for _, ev := range resp.State {
			switch {
			case ev.Type == event.StateCreate:
				hasCreate = true
			case ev.Type == event.StateMember && ev.GetStateKey() == alice.UserID.String():
				hasAlice = true
			case ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String():
				hasBob = true
			}
		}
		if !hasCreate || !hasAlice || hasBob {
			t.Errorf("state at m7: create %v, alice %v, bob %v; want true, true, false", hasCreate, hasAlice, hasBob)
		}
		// Around m9 the events after reach bob's join: the state holds it.
		resp9, err := alice.Context(ctx, roomID, msgs[9], nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp9.EventsAfter) != 2 || resp9.EventsAfter[0].Type != event.StateMember || resp9.EventsAfter[1].ID != msgs[10] {
			t.Errorf("events_after m9 = %v, want bob's join then m10", eventIDs(resp9.EventsAfter))
		}
		hasBob = false
		for _, ev := range resp9.State {
			if ev.Type == event.StateMember && ev.GetStateKey() == bob.UserID.String() {
				hasBob = true
			}
		}
		if !hasBob {
			t.Error("state at m10 lacks bob's join")
		}

		// The limit splits into limit/2 before and the rest after; 0
		// still returns the event, and the default is 10.
		for _, c := range []struct {
			limit         string
			before, after int
		}{{"5", 2, 3}, {"1", 0, 1}, {"0", 0, 0}, {"", 5, 5}} {
			q := map[string]string{}
			if c.limit != "" {
				q["limit"] = c.limit
			}
			r, err := contextRaw(ctx, alice, "v3", roomID, msgs[5], q)
			if err != nil {
				t.Fatalf("limit %q: %v", c.limit, err)
			}
			if len(r.EventsBefore) != c.before || len(r.EventsAfter) != c.after || r.Event == nil || r.Event.ID != msgs[5] {
				t.Errorf("limit %q: %d before, %d after, event %v; want %d, %d", c.limit, len(r.EventsBefore), len(r.EventsAfter), r.Event, c.before, c.after)
			}
			i := at(msgs[5])
			want := slices.Clone(all[max(0, i-c.before):i])
			slices.Reverse(want)
			if got := eventIDs(r.EventsBefore); !slices.Equal(got, want) {
				t.Errorf("limit %q: events_before %v, want %v", c.limit, got, want)
			}
			if got, want := eventIDs(r.EventsAfter), all[i+1:i+1+c.after]; !slices.Equal(got, want) {
				t.Errorf("limit %q: events_after %v, want %v", c.limit, got, want)
			}
		}
		// The r0 path answers too.
		if _, err := contextRaw(ctx, alice, "r0", roomID, msgs[5], nil); err != nil {
			t.Errorf("r0: %v", err)
		}
		// At the start of the room the events before are what there is.
		first, err := alice.Context(ctx, roomID, all[1], nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		if got := eventIDs(first.EventsBefore); !slices.Equal(got, all[:1]) {
			t.Errorf("events_before the second event = %v, want %v", got, all[:1])
		}

		// start and end go on with /messages: backwards from start, the
		// context, then forwards from end, is the whole timeline once.
		var seq []id.EventID // newest first while paging back
		from := resp.Start
		for range 20 {
			page, err := alice.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, nil, 3)
			if err != nil {
				t.Fatal(err)
			}
			seq = append(seq, eventIDs(page.Chunk)...)
			if page.End == "" || len(page.Chunk) == 0 {
				break
			}
			from = page.End
		}
		slices.Reverse(seq)
		mid := eventIDs(resp.EventsBefore)
		slices.Reverse(mid)
		seq = append(append(append(seq, mid...), resp.Event.ID), eventIDs(resp.EventsAfter)...)
		from = resp.End
		for range 20 {
			page, err := alice.Messages(ctx, roomID, from, "", mautrix.DirectionForward, nil, 3)
			if err != nil {
				t.Fatal(err)
			}
			seq = append(seq, eventIDs(page.Chunk)...)
			if page.End == "" || len(page.Chunk) == 0 {
				break
			}
			from = page.End
		}
		if !slices.Equal(seq, all) {
			t.Errorf("paging from /context's tokens:\n got %v\nwant %v", seq, all)
		}

		// Unknown events, events of another room and bad parameters.
		_, err = alice.Context(ctx, roomID, "$nosuchevent", nil, 4)
		mustErrcode(t, err, "M_NOT_FOUND")
		other, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = alice.Context(ctx, other.RoomID, msgs[5], nil, 4)
		mustErrcode(t, err, "M_NOT_FOUND")
		for _, q := range []map[string]string{{"limit": "-1"}, {"limit": "abc"}, {"filter": "{not json"}} {
			_, err := contextRaw(ctx, alice, "v3", roomID, msgs[5], q)
			mustErrcode(t, err, "M_INVALID_PARAM")
			var he mautrix.HTTPError
			if errors.As(err, &he); he.Response == nil || he.Response.StatusCode != http.StatusBadRequest {
				t.Errorf("%v: want status 400, got %v", q, err)
			}
		}
	})
}

// TestEventContextFilter: the filter applies to the events around and to
// the state, not to the event itself, and lazy_load_members leaves in the
// state only the members who sent the events returned.
func TestEventContextFilter(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob, carol := hs.Client("alice"), hs.Client("bob"), hs.Client("carol")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		for _, c := range []*mautrix.Client{bob, carol} {
			if _, err := c.JoinRoomByID(ctx, roomID); err != nil {
				t.Fatal(err)
			}
		}
		a1 := sendTexts(t, alice, roomID, "a1")[0]
		b1 := sendTexts(t, bob, roomID, "b1")[0]
		a2 := sendTexts(t, alice, roomID, "a2")[0]
		sendTexts(t, carol, roomID, "c1")

		lazy := &mautrix.FilterPart{LazyLoadMembers: true}
		resp, err := bob.Context(ctx, roomID, b1, lazy, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(eventIDs(resp.EventsBefore), []id.EventID{a1}) || !slices.Equal(eventIDs(resp.EventsAfter), []id.EventID{a2}) {
			t.Fatalf("neighbours %v, %v; want [%s], [%s]", eventIDs(resp.EventsBefore), eventIDs(resp.EventsAfter), a1, a2)
		}
		var members []string
		for _, ev := range resp.State {
			if ev.Type != event.StateMember {
				t.Errorf("lazy state holds %s", ev.Type)
			}
			members = append(members, ev.GetStateKey())
		}
		slices.Sort(members)
		want := []string{alice.UserID.String(), bob.UserID.String()}
		slices.Sort(want)
		if !slices.Equal(members, want) {
			t.Errorf("lazy-loaded members %v, want %v", members, want)
		}

		// Without lazy loading the whole state comes, carol included.
		full, err := bob.Context(ctx, roomID, b1, nil, 2)
		if err != nil {
			t.Fatal(err)
		}
		hasCarol := false
		for _, ev := range full.State {
			hasCarol = hasCarol || ev.GetStateKey() == carol.UserID.String()
		}
		if !hasCarol || len(full.State) <= len(resp.State) {
			t.Errorf("full state of %d events lacks carol or is no larger than the lazy one", len(full.State))
		}

		// A types filter: the messages and joins around drop out, the
		// event itself (a message) stays, and the state is the topic only.
		topicResp, err := alice.SendStateEvent(ctx, roomID, event.StateTopic, "", map[string]string{"topic": "t"})
		if err != nil {
			t.Fatal(err)
		}
		onlyTopic := &mautrix.FilterPart{Types: []event.Type{event.StateTopic}}
		r, err := bob.Context(ctx, roomID, a2, onlyTopic, 10)
		if err != nil {
			t.Fatal(err)
		}
		if r.Event == nil || r.Event.ID != a2 {
			t.Errorf("filtered event = %v, want %s", r.Event, a2)
		}
		if len(r.EventsBefore) != 0 || !slices.Equal(eventIDs(r.EventsAfter), []id.EventID{topicResp.EventID}) {
			t.Errorf("filtered neighbours %v, %v; want [], [%s]", eventIDs(r.EventsBefore), eventIDs(r.EventsAfter), topicResp.EventID)
		}
		for _, ev := range r.State {
			if ev.Type != event.StateTopic {
				t.Errorf("filtered state holds %s", ev.Type)
			}
		}
		if len(r.State) != 1 {
			t.Errorf("filtered state has %d events, want the topic", len(r.State))
		}
	})
}

// TestEventContextVisibility: /context hides what history visibility
// hides: an event from before a user's join to a joined-visibility room
// is not found, and the hidden events around a visible one are left out.
func TestEventContextVisibility(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob, carol := hs.Client("alice"), hs.Client("bob"), hs.Client("carol")
		roomID, ids := historyRoom(t, alice, "joined", bob.UserID, func(roomID id.RoomID) {
			if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
				t.Fatal(err)
			}
		})
		for _, body := range []string{"before invite", "while invited"} {
			_, err := bob.Context(ctx, roomID, ids[body], nil, 10)
			mustErrcode(t, err, "M_NOT_FOUND")
		}
		resp, err := bob.Context(ctx, roomID, ids["after join"], nil, 20)
		if err != nil {
			t.Fatal(err)
		}
		// Just before "after join" bob sees his own join; the messages
		// and his invite before it are left out.
		before := eventIDs(resp.EventsBefore)
		if len(resp.EventsBefore) == 0 || resp.EventsBefore[0].Type != event.StateMember || resp.EventsBefore[0].GetStateKey() != bob.UserID.String() {
			t.Errorf("bob's events_before = %v, want his join first", before)
		}
		for _, ev := range resp.EventsBefore {
			if ev.Type == event.EventMessage || (ev.Type == event.StateMember && ev.Content.Raw["membership"] == "invite") {
				t.Errorf("bob sees %s %v before his join", ev.Type, ev.Content.Raw)
			}
		}
		// alice sees the whole history around the same event.
		all, err := alice.Context(ctx, roomID, ids["after join"], nil, 20)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(eventIDs(all.EventsBefore), ids["before invite"]) {
			t.Errorf("alice's events_before %v lacks %q", eventIDs(all.EventsBefore), "before invite")
		}
		// bob's start token goes on with /messages to nothing more.
		page, err := bob.Messages(ctx, roomID, resp.Start, "", mautrix.DirectionBackward, nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Chunk) != 0 {
			t.Errorf("bob pages back from /context to %v", eventIDs(page.Chunk))
		}
		// carol never joined the room: forbidden.
		_, err = carol.Context(ctx, roomID, ids["after join"], nil, 10)
		mustErrcode(t, err, "M_FORBIDDEN")
	})
}
