package clientapi_test

// End-to-end tests of reporting content (report_content.yaml).

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/reports"
)

// report posts body to a reporting endpoint under /_matrix/client/v3.
func report(cli *mautrix.Client, body any, path ...any) error {
	_, err := cli.MakeRequest(context.Background(), "POST", cli.BuildClientURL(append([]any{"v3"}, path...)...), body, nil)
	return err
}

// TestReportContent: reports of events, rooms and users are stored with
// reporter, target, reason and score; an event the reporter cannot see
// is 404 exactly like an unknown one; a user report never tells whether
// the user exists; bad bodies are M_BAD_JSON.
func TestReportContent(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob, eve := hs.Client("alice"), hs.Client("bob"), hs.Client("eve")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		other, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoom(ctx, roomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		msg, err := alice.SendText(ctx, roomID, "buy now")
		if err != nil {
			t.Fatal(err)
		}
		gone, err := alice.SendText(ctx, roomID, "regretted")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.RedactEvent(ctx, roomID, gone.EventID); err != nil {
			t.Fatal(err)
		}

		ok := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		want := func(what string, err error, status int, code string) {
			t.Helper()
			if st, c := matrixErr(err); st != status || c != code {
				t.Errorf("%s: HTTP %d %s, want %d %s", what, st, c, status, code)
			}
		}

		// Events.
		ok("bob reports a message", report(bob, map[string]any{"reason": "spam", "score": -100}, "rooms", roomID, "report", msg.EventID))
		ok("a report without reason", report(bob, map[string]any{}, "rooms", roomID, "report", msg.EventID))
		ok("mautrix ReportEvent", bob.ReportEvent(ctx, roomID, msg.EventID, "again"))
		for _, c := range []struct {
			what   string
			cli    *mautrix.Client
			roomID id.RoomID
			evID   id.EventID
		}{
			{"a non-member", eve, roomID, msg.EventID},
			{"an unknown event", bob, roomID, "$nosuchevent"},
			{"the event under another room", alice, other.RoomID, msg.EventID},
			{"a redacted event", bob, roomID, gone.EventID},
			{"an unknown room", bob, "!nosuchroom:localhost", msg.EventID},
		} {
			want(c.what, report(c.cli, map[string]any{"reason": "x"}, "rooms", c.roomID, "report", c.evID), 404, "M_NOT_FOUND")
		}
		// History hidden from bob: an event from before he joined a room
		// visible to members only while joined is as unknown.
		private, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
			Type: event.StateHistoryVisibility, Content: event.Content{Raw: map[string]any{"history_visibility": "joined"}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		hidden, err := alice.SendText(ctx, private.RoomID, "before bob")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoom(ctx, private.RoomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		want("an event hidden by history visibility", report(bob, map[string]any{"reason": "x"}, "rooms", private.RoomID, "report", hidden.EventID), 404, "M_NOT_FOUND")

		want("reason a number", report(bob, map[string]any{"reason": 5}, "rooms", roomID, "report", msg.EventID), 400, "M_BAD_JSON")
		want("score a string", report(bob, map[string]any{"score": "-5"}, "rooms", roomID, "report", msg.EventID), 400, "M_BAD_JSON")
		want("score a float", report(bob, map[string]any{"score": -0.5}, "rooms", roomID, "report", msg.EventID), 400, "M_BAD_JSON")
		want("reason with a NUL", report(bob, map[string]any{"reason": "a\x00b"}, "rooms", roomID, "report", msg.EventID), 400, "M_BAD_JSON")
		want("reason too long", report(bob, map[string]any{"reason": strings.Repeat("a", 1001)}, "rooms", roomID, "report", msg.EventID), 400, "M_BAD_JSON")

		// Rooms: no membership needed.
		ok("eve reports the room", eve.ReportRoom(ctx, roomID, "scam room"))
		want("a room report without reason", report(eve, map[string]any{}, "rooms", roomID, "report"), 400, "M_BAD_JSON")
		want("an unknown room", report(eve, map[string]any{"reason": "x"}, "rooms", "!nosuchroom:localhost", "report"), 404, "M_NOT_FOUND")

		// Users: unknown and remote users answer 200 and store nothing.
		ok("eve reports alice", report(eve, map[string]any{"reason": "harassment"}, "users", alice.UserID, "report"))
		ok("an unknown user", report(eve, map[string]any{"reason": "x"}, "users", "@nobody:localhost", "report"))
		ok("a remote user", report(eve, map[string]any{"reason": "x"}, "users", "@someone:elsewhere.example", "report"))
		want("a malformed user ID", report(eve, map[string]any{"reason": "x"}, "users", "alice", "report"), 400, "M_INVALID_PARAM")
		want("a user report without reason", report(eve, map[string]any{}, "users", alice.UserID, "report"), 400, "M_BAD_JSON")
		want("a user report reason too long", report(eve, map[string]any{"reason": strings.Repeat("é", 1001)}, "users", alice.UserID, "report"), 400, "M_BAD_JSON")

		got, err := hs.Reports.List(ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			kind     reports.Kind
			reporter id.UserID
			roomID   id.RoomID
			eventID  id.EventID
			target   id.UserID
			reason   string
			score    int64 // 1: none
		}
		wantRows := []row{
			{reports.Event, bob.UserID, roomID, msg.EventID, alice.UserID, "spam", -100},
			{reports.Event, bob.UserID, roomID, msg.EventID, alice.UserID, "", 1},
			{reports.Event, bob.UserID, roomID, msg.EventID, alice.UserID, "again", 1},
			{reports.Room, eve.UserID, roomID, "", "", "scam room", 1},
			{reports.User, eve.UserID, "", "", alice.UserID, "harassment", 1},
		}
		if len(got) != len(wantRows) {
			t.Fatalf("stored %d reports, want %d: %+v", len(got), len(wantRows), got)
		}
		for i, r := range got {
			score := int64(1)
			if r.Score != nil {
				score = *r.Score
			}
			have := row{r.Kind, r.Reporter, r.RoomID, r.EventID, r.Target, r.Reason, score}
			if have != wantRows[i] || r.Received.IsZero() {
				t.Errorf("report %d = %+v, want %+v", i, have, wantRows[i])
			}
		}
	})
}

// TestReportRateLimit: each user's reports are limited on their own,
// below the general rate limit.
func TestReportRateLimit(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine, func(c *config.Config) {
			c.RateLimit = config.RateLimit{Enabled: true, PerSecond: 1000, Burst: 1000, ReportsPerSecond: 0.001, ReportsBurst: 2}
		})
		alice, bob := hs.Client("alice"), hs.Client("bob")
		for i := range 2 {
			if err := report(alice, map[string]any{"reason": "x"}, "users", bob.UserID, "report"); err != nil {
				t.Fatalf("report %d: %v", i, err)
			}
		}
		err := report(alice, map[string]any{"reason": "x"}, "users", bob.UserID, "report")
		if st, code := matrixErr(err); st != 429 || code != "M_LIMIT_EXCEEDED" {
			t.Fatalf("third report: HTTP %d %s, want 429 M_LIMIT_EXCEEDED", st, code)
		}
		if _, err := alice.Whoami(ctx); err != nil {
			t.Errorf("other requests after the report limit: %v", err)
		}
		if err := report(bob, map[string]any{"reason": "x"}, "users", alice.UserID, "report"); err != nil {
			t.Errorf("another user's report: %v", err)
		}
	})
}
