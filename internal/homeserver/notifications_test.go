package homeserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// unread is a room's unread_notifications.
type unread struct {
	Notifications int `json:"notification_count"`
	Highlights    int `json:"highlight_count"`
}

// syncCounts is the part of a /sync response the count tests read.
type syncCounts struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[id.RoomID]struct {
			Unread  *unread               `json:"unread_notifications"`
			Threads map[id.EventID]unread `json:"unread_thread_notifications"`
		} `json:"join"`
	} `json:"rooms"`
}

const threadFilter = `{"room":{"timeline":{"unread_thread_notifications":true}}}`

// syncOnce runs one /sync (initial when since is empty).
func syncOnce(t *testing.T, cli *mautrix.Client, since, filter string, timeoutMS int) syncCounts {
	t.Helper()
	q := map[string]string{"timeout": fmt.Sprint(timeoutMS)}
	if since != "" {
		q["since"] = since
	}
	if filter != "" {
		q["filter"] = filter
	}
	var resp syncCounts
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, q)
	if _, err := cli.MakeRequest(context.Background(), "GET", u, nil, &resp); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return resp
}

// waitCounts waits until an initial /sync with filter shows want as the
// room's unread_notifications (and, with the thread filter, threads).
func waitCounts(t *testing.T, cli *mautrix.Client, roomID id.RoomID, filter string, want unread, threads map[id.EventID]unread) {
	t.Helper()
	var got unread
	var gotThreads map[id.EventID]unread
	waitFor(t, fmt.Sprintf("%s's counts in %s to be %+v %v", cli.UserID, roomID, want, threads), func() (bool, error) {
		resp := syncOnce(t, cli, "", filter, 0)
		jr, ok := resp.Rooms.Join[roomID]
		if !ok {
			return false, fmt.Errorf("room not in sync")
		}
		if jr.Unread == nil {
			return false, fmt.Errorf("no unread_notifications")
		}
		got, gotThreads = *jr.Unread, jr.Threads
		if threads == nil {
			threads = map[id.EventID]unread{}
		}
		if gotThreads == nil {
			gotThreads = map[id.EventID]unread{}
		}
		return got == want && fmt.Sprint(gotThreads) == fmt.Sprint(threads), fmt.Errorf("got %+v %v", got, gotThreads)
	})
}

// notification is one entry of GET /notifications.
type notification struct {
	Actions []json.RawMessage `json:"actions"`
	Event   struct {
		EventID id.EventID `json:"event_id"`
		Type    string     `json:"type"`
		Sender  id.UserID  `json:"sender"`
	} `json:"event"`
	Read   bool      `json:"read"`
	RoomID id.RoomID `json:"room_id"`
	TS     int64     `json:"ts"`
}

type notificationsPage struct {
	NextToken     string         `json:"next_token"`
	Notifications []notification `json:"notifications"`
}

func getNotifications(t *testing.T, cli *mautrix.Client, q map[string]string) notificationsPage {
	t.Helper()
	var p notificationsPage
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "notifications"}, q)
	if _, err := cli.MakeRequest(context.Background(), "GET", u, nil, &p); err != nil {
		t.Fatalf("GET /notifications: %v", err)
	}
	return p
}

// notifiedUpTo waits until marker is among cli's notifications and
// returns them, newest first.
func notifiedUpTo(t *testing.T, cli *mautrix.Client, marker id.EventID) []notification {
	t.Helper()
	var out []notification
	waitFor(t, fmt.Sprintf("%s notified of %s", cli.UserID, marker), func() (bool, error) {
		out = getNotifications(t, cli, map[string]string{"limit": "100"}).Notifications
		return slices.ContainsFunc(out, func(n notification) bool { return n.Event.EventID == marker }), nil
	})
	return out
}

func findNotification(ns []notification, ev id.EventID) *notification {
	for i := range ns {
		if ns[i].Event.EventID == ev {
			return &ns[i]
		}
	}
	return nil
}

// highlights reports whether the actions set the highlight tweak.
func highlights(actions []json.RawMessage) bool {
	for _, a := range actions {
		s := string(a)
		if strings.Contains(s, `"highlight"`) && !strings.Contains(s, `"value":false`) {
			return true
		}
	}
	return false
}

func sendRaw(t *testing.T, cli *mautrix.Client, roomID id.RoomID, evType event.Type, content map[string]any) id.EventID {
	t.Helper()
	resp, err := cli.SendMessageEvent(context.Background(), roomID, evType, content)
	if err != nil {
		t.Fatalf("sending %s: %v", evType.Type, err)
	}
	return resp.EventID
}

func text(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

// group creates a private room of creator with the others joined.
func group(t *testing.T, creator *mautrix.Client, others ...*mautrix.Client) id.RoomID {
	t.Helper()
	ctx := context.Background()
	created, err := creator.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatalf("creating a room: %v", err)
	}
	for _, c := range others {
		if _, err := c.JoinRoomByID(ctx, created.RoomID); err != nil {
			t.Fatalf("%s joining: %v", c.UserID, err)
		}
	}
	return created.RoomID
}

// TestNotificationCountsRiseAndFall: messages raise the other members'
// counts in /sync (and wake an incremental sync), read receipts (public
// and private) and the user's own message lower them, and GET
// /notifications lists them with their read flag and pages.
func TestNotificationCountsRiseAndFall(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		roomID := group(t, alice, bob, carol)
		// Every joined room reports counts, zero when there are none.
		waitCounts(t, bob, roomID, "", unread{}, nil)
		start := syncOnce(t, bob, "", "", 0)

		first := sendRaw(t, alice, roomID, event.EventMessage, text("one"))
		second := sendRaw(t, alice, roomID, event.EventMessage, text("two"))
		waitCounts(t, bob, roomID, "", unread{Notifications: 2}, nil)
		waitCounts(t, carol, roomID, "", unread{Notifications: 2}, nil)
		waitCounts(t, alice, roomID, "", unread{}, nil) // not for the sender's own

		// An incremental sync is woken by the change and carries it.
		inc := syncOnce(t, bob, start.NextBatch, "", 5000)
		if jr, ok := inc.Rooms.Join[roomID]; !ok || jr.Unread == nil || jr.Unread.Notifications < 1 {
			t.Fatalf("incremental sync after two messages: %+v", inc.Rooms.Join)
		}
		waitFor(t, "an incremental sync with the count of two", func() (bool, error) {
			for _, jr := range syncOnce(t, bob, start.NextBatch, "", 0).Rooms.Join {
				if jr.Unread != nil && jr.Unread.Notifications == 2 {
					return true, nil
				}
			}
			return false, nil
		})
		before := syncOnce(t, bob, "", "", 0).NextBatch

		// A public receipt on the first clears it; the room comes down an
		// incremental sync with the new count.
		if err := bob.MarkRead(ctx, roomID, first); err != nil {
			t.Fatal(err)
		}
		waitCounts(t, bob, roomID, "", unread{Notifications: 1}, nil)
		var seen bool
		for range 20 {
			inc := syncOnce(t, bob, before, "", 2000)
			if jr, ok := inc.Rooms.Join[roomID]; ok && jr.Unread != nil && *jr.Unread == (unread{Notifications: 1}) {
				seen = true
				break
			}
			before = inc.NextBatch
		}
		if !seen {
			t.Fatalf("no incremental sync carried the count after the receipt")
		}
		// A private receipt clears too.
		if err := bob.SendReceipt(ctx, roomID, second, event.ReceiptTypeReadPrivate, nil); err != nil {
			t.Fatal(err)
		}
		waitCounts(t, bob, roomID, "", unread{}, nil)

		// Carol's own message marks what came before read for her.
		waitCounts(t, carol, roomID, "", unread{Notifications: 2}, nil)
		third := sendRaw(t, carol, roomID, event.EventMessage, text("three"))
		waitCounts(t, carol, roomID, "", unread{}, nil)
		waitCounts(t, bob, roomID, "", unread{Notifications: 1}, nil)

		// GET /notifications: newest first, read flags, paging.
		ns := notifiedUpTo(t, bob, third)
		var got []id.EventID
		var read []bool
		for _, n := range ns {
			got = append(got, n.Event.EventID)
			read = append(read, n.Read)
			if n.RoomID != roomID || n.TS == 0 || len(n.Actions) == 0 {
				t.Errorf("notification %+v lacks room_id, ts or actions", n)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint([]id.EventID{third, second, first}) || fmt.Sprint(read) != "[false true true]" {
			t.Fatalf("bob's notifications %v read %v, want [%s %s %s] [false true true]", got, read, third, second, first)
		}
		page := getNotifications(t, bob, map[string]string{"limit": "2"})
		if len(page.Notifications) != 2 || page.NextToken == "" {
			t.Fatalf("first page: %+v", page)
		}
		rest := getNotifications(t, bob, map[string]string{"limit": "2", "from": page.NextToken})
		if len(rest.Notifications) != 1 || rest.Notifications[0].Event.EventID != first || rest.NextToken != "" {
			t.Fatalf("second page: %+v", rest)
		}
		if hl := getNotifications(t, bob, map[string]string{"only": "highlight"}); len(hl.Notifications) != 0 {
			t.Fatalf("only=highlight listed plain messages: %+v", hl)
		}
		// Bad input is refused with the spec's error.
		u := bob.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "notifications"}, map[string]string{"limit": "x"})
		if _, err := bob.MakeRequest(ctx, "GET", u, nil, nil); err == nil || !strings.Contains(err.Error(), "M_INVALID_PARAM") {
			t.Fatalf("limit=x: %v, want M_INVALID_PARAM", err)
		}
	})
}

// TestNotificationDefaultRules checks what the server-default rules make
// of each kind of event, through GET /notifications and /sync counts.
func TestNotificationDefaultRules(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		roomID := group(t, alice, bob, carol)
		if err := bob.SetDisplayName(ctx, "Bobby Tables"); err != nil {
			t.Fatal(err)
		}

		type step struct {
			name      string
			from      *mautrix.Client
			evType    event.Type
			content   map[string]any
			notify    bool
			highlight bool
		}
		steps := []step{
			{"plain message (.m.rule.message)", alice, event.EventMessage, text("hello"), true, false},
			{"user mention (.m.rule.is_user_mention)", carol, event.EventMessage,
				map[string]any{"msgtype": "m.text", "body": "hi", "m.mentions": map[string]any{"user_ids": []id.UserID{bob.UserID}}}, true, true},
			{"display name without m.mentions (.m.rule.contains_display_name)", carol, event.EventMessage, text("ping Bobby Tables!"), true, true},
			{"display name with m.mentions elsewhere (legacy rule skipped)", carol, event.EventMessage,
				map[string]any{"msgtype": "m.text", "body": "Bobby Tables", "m.mentions": map[string]any{}}, true, false},
			{"room mention by the creator (.m.rule.is_room_mention)", alice, event.EventMessage,
				map[string]any{"msgtype": "m.text", "body": "all", "m.mentions": map[string]any{"room": true}}, true, true},
			{"room mention without power (sender_notification_permission)", carol, event.EventMessage,
				map[string]any{"msgtype": "m.text", "body": "all", "m.mentions": map[string]any{"room": true}}, true, false},
			{"notice (.m.rule.suppress_notices)", alice, event.EventMessage, map[string]any{"msgtype": "m.notice", "body": "bot"}, false, false},
			{"encrypted in a group (.m.rule.encrypted)", alice, event.EventEncrypted,
				map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "xx", "session_id": "s", "sender_key": "k", "device_id": "D"}, true, false},
			{"custom event type (no rule)", alice, event.Type{Type: "org.example.custom", Class: event.MessageEventType}, map[string]any{"body": "x"}, false, false},
		}
		var last id.EventID
		for _, st := range steps {
			evID := sendRaw(t, st.from, roomID, st.evType, st.content)
			// Edits and reactions of the step's event notify nobody.
			edit := sendRaw(t, alice, roomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": "* fixed",
				"m.new_content": text("fixed"), "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": evID}})
			reaction := sendRaw(t, carol, roomID, event.EventReaction, map[string]any{
				"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": evID, "key": "👍"}})
			marker := sendRaw(t, alice, roomID, event.EventMessage, text("marker"))
			ns := notifiedUpTo(t, bob, marker)
			n := findNotification(ns, evID)
			switch {
			case st.notify && n == nil:
				t.Errorf("%s: not notified", st.name)
			case !st.notify && n != nil:
				t.Errorf("%s: notified with %s", st.name, n.Actions)
			case n != nil && highlights(n.Actions) != st.highlight:
				t.Errorf("%s: actions %s, want highlight %v", st.name, n.Actions, st.highlight)
			}
			if findNotification(ns, edit) != nil {
				t.Errorf("%s: the edit notified (.m.rule.suppress_edits)", st.name)
			}
			if findNotification(ns, reaction) != nil {
				t.Errorf("%s: the reaction notified (.m.rule.reaction)", st.name)
			}
			last = marker
		}
		// The counts agree with the list: unread notifications and
		// highlights since bob never read.
		ns := notifiedUpTo(t, bob, last)
		var want unread
		for _, n := range ns {
			if !n.Read {
				want.Notifications++
				if highlights(n.Actions) {
					want.Highlights++
				}
			}
		}
		if want.Highlights != 3 {
			t.Errorf("bob has %d highlights, want 3", want.Highlights)
		}
		waitCounts(t, bob, roomID, "", want, nil)

		// Direct chats: a one-to-one room notifies with a sound, plain or
		// encrypted (.m.rule.room_one_to_one, .m.rule.encrypted_room_one_to_one).
		dm, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		// The invite notifies the invitee (.m.rule.invite_for_me).
		var invite id.EventID
		waitFor(t, "bob notified of the invite", func() (bool, error) {
			for _, n := range getNotifications(t, bob, nil).Notifications {
				if n.RoomID == dm.RoomID && n.Event.Type == "m.room.member" {
					invite = n.Event.EventID
					return true, nil
				}
			}
			return false, nil
		})
		if _, err := bob.JoinRoomByID(ctx, dm.RoomID); err != nil {
			t.Fatal(err)
		}
		plain := sendRaw(t, alice, dm.RoomID, event.EventMessage, text("psst"))
		enc := sendRaw(t, alice, dm.RoomID, event.EventEncrypted,
			map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "xx", "session_id": "s", "sender_key": "k", "device_id": "D"})
		ns = notifiedUpTo(t, bob, enc)
		for _, ev := range []id.EventID{plain, enc} {
			n := findNotification(ns, ev)
			if n == nil || !strings.Contains(fmt.Sprint(n.Actions), "sound") {
				t.Errorf("DM event %s: %+v, want a notification with a sound", ev, n)
			}
		}
		_ = invite
	})
}

// TestNotificationThreads: unread_thread_notifications splits the counts
// per thread, and threaded receipts clear only their thread.
func TestNotificationThreads(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		roomID := group(t, alice, bob, carol)
		root := sendRaw(t, alice, roomID, event.EventMessage, text("root"))
		r1 := sendRaw(t, alice, roomID, event.EventMessage, threadReply(root, "in thread 1"))
		r2 := sendRaw(t, alice, roomID, event.EventMessage, threadReply(root, "in thread 2"))
		main2 := sendRaw(t, alice, roomID, event.EventMessage, text("main 2"))

		waitCounts(t, bob, roomID, "", unread{Notifications: 4}, nil)
		waitCounts(t, bob, roomID, threadFilter, unread{Notifications: 2}, map[id.EventID]unread{root: {Notifications: 2}})

		// A threaded receipt in the thread clears only the thread, up to it.
		if err := bob.SendReceipt(ctx, roomID, r1, event.ReceiptTypeRead, map[string]any{"thread_id": root}); err != nil {
			t.Fatal(err)
		}
		waitCounts(t, bob, roomID, threadFilter, unread{Notifications: 2}, map[id.EventID]unread{root: {Notifications: 1}})
		// "main" clears the main timeline only.
		if err := bob.SendReceipt(ctx, roomID, main2, event.ReceiptTypeRead, map[string]any{"thread_id": "main"}); err != nil {
			t.Fatal(err)
		}
		waitCounts(t, bob, roomID, threadFilter, unread{}, map[id.EventID]unread{root: {Notifications: 1}})
		waitCounts(t, bob, roomID, "", unread{Notifications: 1}, nil)
		// An unthreaded receipt clears every thread.
		if err := bob.SendReceipt(ctx, roomID, r2, event.ReceiptTypeReadPrivate, nil); err != nil {
			t.Fatal(err)
		}
		waitCounts(t, bob, roomID, threadFilter, unread{}, nil)

		// Carol's own reply in the thread clears her thread, not her main.
		waitCounts(t, carol, roomID, threadFilter, unread{Notifications: 2}, map[id.EventID]unread{root: {Notifications: 2}})
		sendRaw(t, carol, roomID, event.EventMessage, threadReply(root, "carol replies"))
		waitCounts(t, carol, roomID, threadFilter, unread{Notifications: 2}, nil)
	})
}

// TestNotificationOverFederation: a message from another server notifies
// the local members, counted in their /sync.
func TestNotificationOverFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		bob2 := hs[1].Client("bobtwo")
		roomID := publicRoom(t, alice, hs[0].Config.ServerName, bob, bob2)
		mention := sendRaw(t, alice, roomID, event.EventMessage,
			map[string]any{"msgtype": "m.text", "body": "hi", "m.mentions": map[string]any{"user_ids": []id.UserID{bob.UserID}}})
		waitCounts(t, bob, roomID, "", unread{Notifications: 1, Highlights: 1}, nil)
		waitCounts(t, bob2, roomID, "", unread{Notifications: 1}, nil)
		if n := findNotification(notifiedUpTo(t, bob, mention), mention); n == nil || n.Event.Sender != alice.UserID {
			t.Fatalf("bob's notification of the remote mention: %+v", n)
		}
	})
}

// TestNotificationEvaluationSurvivesRestart: events stored but not yet
// evaluated when the server stopped are evaluated after it starts again,
// from the persisted cursor.
func TestNotificationEvaluationSurvivesRestart(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		roomID := group(t, alice, bob, carol)
		waitCounts(t, bob, roomID, "", unread{}, nil)
		var from int64
		if err := srv.DB().QueryRowContext(ctx, `SELECT MAX(stream_pos) FROM events`).Scan(&from); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			sendRaw(t, alice, roomID, event.EventMessage, text(fmt.Sprint("before the stop ", i)))
		}
		waitCounts(t, bob, roomID, "", unread{Notifications: 3}, nil)
		// Forget their evaluation and move the cursor back: the state a
		// stop between their commit and the worker's would leave.
		if _, err := srv.DB().ExecContext(ctx, `DELETE FROM notifications`); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.DB().ExecContext(ctx, `DELETE FROM notification_counts`); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.DB().ExecContext(ctx, `UPDATE notification_cursor SET stream_pos = $1`, from); err != nil {
			t.Fatal(err)
		}
		srv.Restart()
		waitCounts(t, bob, roomID, "", unread{Notifications: 3}, nil)
		waitCounts(t, carol, roomID, "", unread{Notifications: 3}, nil)
	})
}
