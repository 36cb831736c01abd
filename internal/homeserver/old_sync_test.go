package homeserver_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// legacyEvent is an event as the legacy endpoints return it.
type legacyEvent struct {
	Type    string         `json:"type"`
	EventID id.EventID     `json:"event_id"`
	RoomID  id.RoomID      `json:"room_id"`
	Content map[string]any `json:"content"`
}

type legacyChunk struct {
	Start string        `json:"start"`
	End   string        `json:"end"`
	Chunk []legacyEvent `json:"chunk"`
}

type legacyRoom struct {
	RoomID     id.RoomID     `json:"room_id"`
	Membership string        `json:"membership"`
	Messages   legacyChunk   `json:"messages"`
	State      []legacyEvent `json:"state"`
	Visibility string        `json:"visibility"`
}

type legacyInitialSync struct {
	End   string       `json:"end"`
	Rooms []legacyRoom `json:"rooms"`
}

// legacyGet GETs a v3 client path with a query.
func legacyGet(ctx context.Context, cli *mautrix.Client, q map[string]string, out any, path ...any) error {
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath(append([]any{"v3"}, path...)), q)
	_, err := cli.MakeRequest(ctx, "GET", u, nil, out)
	return err
}

func bodies(evs []legacyEvent) []string {
	var out []string
	for _, e := range evs {
		if b, ok := e.Content["body"].(string); ok && e.Type == "m.room.message" {
			out = append(out, b)
		}
	}
	return out
}

func (s legacyInitialSync) room(roomID id.RoomID) *legacyRoom {
	for i := range s.Rooms {
		if s.Rooms[i].RoomID == roomID {
			return &s.Rooms[i]
		}
	}
	return nil
}

// streamUntil long-polls GET /events from a token until body arrives,
// and fails if a poll returns without it long before its timeout (the
// notifier must wake it, not a timer).
func streamUntil(t *testing.T, cli *mautrix.Client, q map[string]string, body string, send func()) legacyChunk {
	t.Helper()
	ctx := context.Background()
	q["timeout"] = "30000"
	type result struct {
		c   legacyChunk
		err error
	}
	done := make(chan result, 1)
	go func() {
		var c legacyChunk
		err := legacyGet(ctx, cli, q, &c, "events")
		done <- result{c, err}
	}()
	start := time.Now()
	send()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("the long-poll took %v: not woken by the new event", took)
	}
	if got := bodies(res.c.Chunk); !slices.Equal(got, []string{body}) {
		t.Fatalf("/events gave %q, want %q", got, body)
	}
	return res.c
}

// TestLegacyEventStream: /initialSync, /events (woken by the notifier),
// /events/{eventId} and /rooms/{roomId}/initialSync, with history
// visibility, archived rooms and peeking at world_readable rooms.
func TestLegacyEventStream(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob, carol := hs.Client("alice"), hs.Client("bob"), hs.Client("carol")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateHistoryVisibility, "", map[string]string{"history_visibility": "joined"}); err != nil {
			t.Fatal(err)
		}
		secret, err := alice.SendText(ctx, roomID, "secret")
		if err != nil {
			t.Fatal(err)
		}

		var is legacyInitialSync
		if err := legacyGet(ctx, alice, nil, &is, "initialSync"); err != nil {
			t.Fatal(err)
		}
		r := is.room(roomID)
		if r == nil || r.Membership != "join" || !slices.Equal(bodies(r.Messages.Chunk), []string{"secret"}) || r.Messages.End == "" {
			t.Fatalf("alice's initialSync room: %+v", r)
		}
		if !slices.ContainsFunc(r.State, func(e legacyEvent) bool { return e.Type == "m.room.create" }) {
			t.Error("initialSync state has no create event")
		}

		// The stream from initialSync's end wakes on the next message.
		c := streamUntil(t, alice, map[string]string{"from": is.End}, "two", func() {
			if _, err := alice.SendText(ctx, roomID, "two"); err != nil {
				t.Error(err)
			}
		})
		var empty legacyChunk
		if err := legacyGet(ctx, alice, map[string]string{"from": c.End, "timeout": "0"}, &empty, "events"); err != nil {
			t.Fatal(err)
		}
		if len(empty.Chunk) != 0 || empty.End == "" {
			t.Errorf("/events with nothing new: %+v", empty)
		}

		// bob joins after the secret: joined visibility hides it everywhere.
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		var bis legacyInitialSync
		if err := legacyGet(ctx, bob, map[string]string{"limit": "50"}, &bis, "initialSync"); err != nil {
			t.Fatal(err)
		}
		if r := bis.room(roomID); r == nil || slices.Contains(bodies(r.Messages.Chunk), "secret") {
			t.Errorf("bob's initialSync room: %+v", r)
		}
		var one legacyEvent
		err = legacyGet(ctx, bob, nil, &one, "events", secret.EventID)
		mustErrcode(t, err, "M_NOT_FOUND")
		if err := legacyGet(ctx, alice, nil, &one, "events", secret.EventID); err != nil || one.Content["body"] != "secret" {
			t.Errorf("alice's /events/{eventId}: %+v, %v", one, err)
		}
		var ri legacyRoom
		if err := legacyGet(ctx, bob, nil, &ri, "rooms", roomID, "initialSync"); err != nil {
			t.Fatal(err)
		}
		// bob may see neither message: both predate his join.
		if ri.Membership != "join" || len(bodies(ri.Messages.Chunk)) != 0 || len(ri.State) == 0 {
			t.Errorf("bob's room initialSync: %+v", ri)
		}

		// carol never joined: the room is closed to her until it is
		// world_readable, then she may peek.
		err = legacyGet(ctx, carol, nil, &ri, "rooms", roomID, "initialSync")
		mustErrcode(t, err, "M_FORBIDDEN")
		err = legacyGet(ctx, carol, map[string]string{"room_id": roomID.String(), "timeout": "0"}, &empty, "events")
		mustErrcode(t, err, "M_FORBIDDEN")
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateHistoryVisibility, "", map[string]string{"history_visibility": "world_readable"}); err != nil {
			t.Fatal(err)
		}
		var peek legacyRoom
		if err := legacyGet(ctx, carol, nil, &peek, "rooms", roomID, "initialSync"); err != nil {
			t.Fatal(err)
		}
		if peek.Membership != "" || len(peek.State) == 0 || slices.Contains(bodies(peek.Messages.Chunk), "secret") {
			t.Errorf("carol's peek: %+v", peek)
		}
		streamUntil(t, carol, map[string]string{"room_id": roomID.String(), "from": peek.Messages.End}, "for all", func() {
			if _, err := alice.SendText(ctx, roomID, "for all"); err != nil {
				t.Error(err)
			}
		})

		// An invite reaches the invitee's stream, whatever the room's
		// history visibility.
		if err := legacyGet(ctx, bob, nil, &bis, "initialSync"); err != nil {
			t.Fatal(err)
		}
		other, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		var invited legacyChunk
		if err := legacyGet(ctx, bob, map[string]string{"from": bis.End, "timeout": "0"}, &invited, "events"); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(invited.Chunk, func(e legacyEvent) bool {
			return e.RoomID == other.RoomID && e.Type == "m.room.member" && e.Content["membership"] == "invite"
		}) || slices.ContainsFunc(invited.Chunk, func(e legacyEvent) bool { return e.RoomID == other.RoomID && e.Type == "m.room.create" }) {
			t.Errorf("bob's stream after an invite: %+v", invited.Chunk)
		}

		// A room bob left shows only with archived=true.
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if err := legacyGet(ctx, bob, nil, &bis, "initialSync"); err != nil {
			t.Fatal(err)
		}
		if bis.room(roomID) != nil {
			t.Error("a left room in initialSync without archived")
		}
		bis = legacyInitialSync{}
		if err := legacyGet(ctx, bob, map[string]string{"archived": "true"}, &bis, "initialSync"); err != nil {
			t.Fatal(err)
		}
		if r := bis.room(roomID); r == nil || r.Membership != "leave" {
			t.Errorf("archived initialSync room: %+v", r)
		}
	})
}
