package clientapi_test

// End-to-end tests of jump to date (room_event_by_timestamp.yaml and the
// federation timestamp_to_event of events.yaml).

import (
	"context"
	"errors"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// sendTimed sends a text message and returns its ID and origin_server_ts,
// after a pause so that the next event has a later timestamp.
func sendTimed(t *testing.T, cli *mautrix.Client, roomID id.RoomID, body string) (id.EventID, int64) {
	t.Helper()
	ctx := context.Background()
	resp, err := cli.SendText(ctx, roomID, body)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := cli.GetEvent(ctx, roomID, resp.EventID)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Millisecond)
	return resp.EventID, ev.Timestamp
}

// matrixErr returns the HTTP status and errcode of a failed request.
func matrixErr(err error) (int, string) {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.Response != nil {
		code := ""
		if he.RespError != nil {
			code = he.RespError.ErrCode
		}
		return he.Response.StatusCode, code
	}
	return 0, ""
}

// atTimestamp calls timestamp_to_event with raw query values.
func atTimestamp(cli *mautrix.Client, roomID id.RoomID, query map[string]string) (*mautrix.RespTimestampToEvent, error) {
	var resp mautrix.RespTimestampToEvent
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath{"v1", "rooms", roomID, "timestamp_to_event"}, query)
	_, err := cli.MakeRequest(context.Background(), "GET", u, nil, &resp)
	return &resp, err
}

func ms(ts int64) time.Time { return time.UnixMilli(ts) }

// TestTimestampToEvent: both directions over local history, the spec's
// errors for bad parameters, 403 outside the room, and a departed user
// finds nothing after their leave.
func TestTimestampToEvent(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob, eve := hs.Client("alice"), hs.Client("bob"), hs.Client("eve")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		m1, ts1 := sendTimed(t, alice, roomID, "one")
		m2, ts2 := sendTimed(t, alice, roomID, "two")
		m3, ts3 := sendTimed(t, alice, roomID, "three")
		for _, c := range []struct {
			name string
			ts   int64
			dir  mautrix.Direction
			want id.EventID
		}{
			{"forward from m2's time", ts2, mautrix.DirectionForward, m2},
			{"forward from just after m1", ts1 + 1, mautrix.DirectionForward, m2},
			{"backward from just before m3", ts3 - 1, mautrix.DirectionBackward, m2},
			{"backward from m1's time", ts1, mautrix.DirectionBackward, m1},
			{"backward from the future", ts3 + 60_000, mautrix.DirectionBackward, m3},
		} {
			resp, err := alice.TimestampToEvent(ctx, roomID, ms(c.ts), c.dir)
			if err != nil || resp.EventID != c.want {
				t.Errorf("%s: %+v, %v; want %s", c.name, resp, err, c.want)
				continue
			}
			if want, _ := map[id.EventID]int64{m1: ts1, m2: ts2, m3: ts3}[c.want]; resp.Timestamp.UnixMilli() != want {
				t.Errorf("%s: origin_server_ts %d, want %d", c.name, resp.Timestamp.UnixMilli(), want)
			}
		}
		_, err = alice.TimestampToEvent(ctx, roomID, ms(ts3+60_000), mautrix.DirectionForward)
		if st, code := matrixErr(err); st != 404 || code != "M_NOT_FOUND" {
			t.Errorf("forward from the future: HTTP %d %s, want 404 M_NOT_FOUND", st, code)
		}
		_, err = alice.TimestampToEvent(ctx, roomID, ms(1), mautrix.DirectionBackward)
		if st, code := matrixErr(err); st != 404 || code != "M_NOT_FOUND" {
			t.Errorf("backward from 1970: HTTP %d %s, want 404 M_NOT_FOUND", st, code)
		}

		for _, c := range []struct {
			name  string
			query map[string]string
			code  string
		}{
			{"no ts", map[string]string{"dir": "f"}, "M_MISSING_PARAM"},
			{"no dir", map[string]string{"ts": "1"}, "M_MISSING_PARAM"},
			{"ts not a number", map[string]string{"ts": "yesterday", "dir": "f"}, "M_INVALID_PARAM"},
			{"ts a float", map[string]string{"ts": "1.5", "dir": "f"}, "M_INVALID_PARAM"},
			{"dir not f or b", map[string]string{"ts": "1", "dir": "forwards"}, "M_INVALID_PARAM"},
		} {
			_, err := atTimestamp(alice, roomID, c.query)
			if st, code := matrixErr(err); st != 400 || code != c.code {
				t.Errorf("%s: HTTP %d %s, want 400 %s", c.name, st, code, c.code)
			}
		}

		_, err = eve.TimestampToEvent(ctx, roomID, ms(ts2), mautrix.DirectionForward)
		if st, code := matrixErr(err); st != 403 || code != "M_FORBIDDEN" {
			t.Errorf("outsider: HTTP %d %s, want 403 M_FORBIDDEN", st, code)
		}
		_, err = eve.TimestampToEvent(ctx, "!nosuchroom:localhost", ms(ts2), mautrix.DirectionForward)
		if st, code := matrixErr(err); st != 403 || code != "M_FORBIDDEN" {
			t.Errorf("unknown room: HTTP %d %s, want 403 M_FORBIDDEN", st, code)
		}

		// In a room whose history is visible only to members while joined,
		// what was said before bob joined is not his to find.
		private, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
			Type: event.StateHistoryVisibility, Content: event.Content{Raw: map[string]any{"history_visibility": "joined"}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		early, tsEarly := sendTimed(t, alice, private.RoomID, "before bob")
		if _, err := bob.JoinRoom(ctx, private.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		if resp, err := alice.TimestampToEvent(ctx, private.RoomID, ms(tsEarly), mautrix.DirectionBackward); err != nil || resp.EventID != early {
			t.Fatalf("alice backward from her message: %+v, %v", resp, err)
		}
		_, err = bob.TimestampToEvent(ctx, private.RoomID, ms(tsEarly), mautrix.DirectionBackward)
		if st, code := matrixErr(err); st != 404 || code != "M_NOT_FOUND" {
			t.Errorf("bob backward into history hidden from him: HTTP %d %s, want 404 M_NOT_FOUND", st, code)
		}

		// bob joins and leaves; what alice says afterwards is not his to find.
		if _, err := bob.JoinRoom(ctx, roomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Millisecond)
		m4, ts4 := sendTimed(t, alice, roomID, "after bob left")
		if resp, err := alice.TimestampToEvent(ctx, roomID, ms(ts4), mautrix.DirectionForward); err != nil || resp.EventID != m4 {
			t.Fatalf("alice forward from m4: %+v, %v", resp, err)
		}
		if resp, err := bob.TimestampToEvent(ctx, roomID, ms(ts4), mautrix.DirectionBackward); err != nil || resp.EventID == m4 {
			t.Errorf("bob after leaving, backward from m4: %+v, %v; want his leave", resp, err)
		}
		_, err = bob.TimestampToEvent(ctx, roomID, ms(ts4), mautrix.DirectionForward)
		if st, code := matrixErr(err); st != 404 || code != "M_NOT_FOUND" {
			t.Errorf("bob after leaving, forward from m4: HTTP %d %s, want 404 M_NOT_FOUND", st, code)
		}
	})
}

// TestTimestampToEventOverFederation: a server that joined late holds no
// history from before its join, so it asks the room's other server
// (federation timestamp_to_event), fetches the event and answers with it,
// in both directions.
func TestTimestampToEventOverFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		_, ts1 := sendTimed(t, alice, roomID, "one")
		m2, ts2 := sendTimed(t, alice, roomID, "two")
		m3, _ := sendTimed(t, alice, roomID, "three")
		if _, err := bob.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err != nil {
			t.Fatal(err)
		}
		// Going forward, the closest event held is bob's join, whose
		// prev_events are missing here: a gap.
		resp, err := bob.TimestampToEvent(ctx, roomID, ms(ts1+1), mautrix.DirectionForward)
		if err != nil || resp.EventID != m2 || resp.Timestamp.UnixMilli() != ts2 {
			t.Fatalf("bob forward from after m1: %+v, %v; want %s at %d", resp, err, m2, ts2)
		}
		// Going backward, nothing from before the join is held at all.
		resp, err = bob.TimestampToEvent(ctx, roomID, ms(ts2+1), mautrix.DirectionBackward)
		if err != nil || resp.EventID != m2 {
			t.Fatalf("bob backward from after m2: %+v, %v; want %s", resp, err, m2)
		}
		// The event was fetched, so bob can read it.
		ev, err := bob.GetEvent(ctx, roomID, m2)
		if err != nil || ev.Content.Raw["body"] != "two" {
			t.Fatalf("bob reading the event found: %+v, %v", ev, err)
		}
		// Local history with no gap next to it is answered locally: the
		// newest event bob's server holds is his join.
		resp, err = bob.TimestampToEvent(ctx, roomID, ms(time.Now().UnixMilli()+60_000), mautrix.DirectionBackward)
		if err != nil || resp.EventID == m3 || resp.EventID == m2 {
			t.Fatalf("bob backward from the future: %+v, %v; want his join", resp, err)
		}
	})
}
