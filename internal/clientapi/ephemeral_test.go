package clientapi_test

// End-to-end tests of account data, typing, receipts and read markers
// (account-data.yaml, typing.yaml, receipts.yaml, read_markers.yaml) and of
// how they reach /sync.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// ephRoom starts a server on engine with alice and bob joined to a room
// alice created, and returns them with carol, who is in no room.
func ephRoom(t *testing.T, engine string) (srv *mxtest.Server, alice, bob, carol *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	ctx := context.Background()
	// Presence off: these tests wait for one change at a time, and each
	// user's first sync (coming online) would be news to the others'
	// long-polls. Presence has its own tests (internal/homeserver).
	srv = mxtest.Start(t, engine, func(c *config.Config) { c.Presence.Enabled = false })
	alice, bob, carol = srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	return srv, alice, bob, carol, created.RoomID
}

// ephSync runs one /sync and fails the test on error.
func ephSync(t *testing.T, cli *mautrix.Client, since string, timeout time.Duration) *mautrix.RespSync {
	t.Helper()
	resp, err := cli.SyncRequest(context.Background(), int(timeout.Milliseconds()), since, "", false, "")
	if err != nil {
		t.Fatalf("%s: sync since %q: %v", cli.UserID, since, err)
	}
	return resp
}

// ephDo sends a raw request with body bytes to the client API path built
// from parts, as cli.
func ephDo(cli *mautrix.Client, method string, body string, parts ...any) error {
	_, err := cli.MakeFullRequest(context.Background(), mautrix.FullRequest{
		Method: method, URL: cli.BuildClientURL(parts...), RequestBytes: []byte(body), MaxAttempts: 1,
	})
	return err
}

// ephWantErr fails unless err is a Matrix error with the status and errcode.
func ephWantErr(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.Response == nil {
		t.Errorf("%s: got %v, want %d %s", what, err, status, code)
		return
	}
	got := ""
	if he.RespError != nil {
		got = he.RespError.ErrCode
	}
	if he.Response.StatusCode != status || got != code {
		t.Errorf("%s: got %d %s (%s), want %d %s", what, he.Response.StatusCode, got, he.ResponseBody, status, code)
	}
}

// ephEvents returns the events of type typ in a room section list.
func ephEvents(list mautrix.SyncEventsList, typ string) []*event.Event {
	var out []*event.Event
	for _, ev := range list.Events {
		if ev.Type.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// ephTyping returns the user_ids of the room's m.typing event in resp, and
// whether there was one.
func ephTyping(t *testing.T, resp *mautrix.RespSync, roomID id.RoomID) ([]string, bool) {
	t.Helper()
	jr, ok := resp.Rooms.Join[roomID]
	if !ok {
		return nil, false
	}
	evs := ephEvents(jr.Ephemeral, "m.typing")
	if len(evs) == 0 {
		return nil, false
	}
	if len(evs) > 1 {
		t.Errorf("%d m.typing events in one room, want 1", len(evs))
	}
	var c struct {
		UserIDs []string `json:"user_ids"`
	}
	if err := json.Unmarshal(evs[0].Content.VeryRaw, &c); err != nil || c.UserIDs == nil {
		t.Fatalf("m.typing content %s: user_ids missing (%v)", evs[0].Content.VeryRaw, err)
	}
	slices.Sort(c.UserIDs)
	return c.UserIDs, true
}

// receiptContent is the content of an m.receipt event.
type receiptContent map[id.EventID]map[string]map[id.UserID]struct {
	TS       int64   `json:"ts"`
	ThreadID *string `json:"thread_id"`
}

// ephReceipts merges the room's m.receipt events in resp.
func ephReceipts(t *testing.T, resp *mautrix.RespSync, roomID id.RoomID) receiptContent {
	t.Helper()
	out := receiptContent{}
	jr, ok := resp.Rooms.Join[roomID]
	if !ok {
		return out
	}
	for _, ev := range ephEvents(jr.Ephemeral, "m.receipt") {
		var c receiptContent
		if err := json.Unmarshal(ev.Content.VeryRaw, &c); err != nil {
			t.Fatalf("m.receipt content %s: %v", ev.Content.VeryRaw, err)
		}
		for evID, byType := range c {
			if out[evID] == nil {
				out[evID] = byType
				continue
			}
			for typ, byUser := range byType {
				out[evID][typ] = byUser
			}
		}
	}
	return out
}

// ephAccountData returns the content of the newest account data event of
// typ in list, or nil.
func ephAccountData(list mautrix.SyncEventsList, typ string) map[string]any {
	evs := ephEvents(list, typ)
	if len(evs) == 0 {
		return nil
	}
	var c map[string]any
	_ = json.Unmarshal(evs[len(evs)-1].Content.VeryRaw, &c)
	return c
}

func TestAccountData(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		_, alice, bob, _, roomID := ephRoom(t, engine)

		if err := alice.SetAccountData(ctx, "org.example.cfg", map[string]any{"k": "v1"}); err != nil {
			t.Fatalf("setAccountData: %v", err)
		}
		if err := alice.SetRoomAccountData(ctx, roomID, "org.example.room", map[string]any{"r": 1}); err != nil {
			t.Fatalf("setAccountDataPerRoom: %v", err)
		}
		var got map[string]any
		if err := alice.GetAccountData(ctx, "org.example.cfg", &got); err != nil || got["k"] != "v1" {
			t.Fatalf("getAccountData = %v, %v; want k=v1", got, err)
		}
		got = nil
		if err := alice.GetRoomAccountData(ctx, roomID, "org.example.room", &got); err != nil || got["r"] != float64(1) {
			t.Fatalf("getAccountDataPerRoom = %v, %v; want r=1", got, err)
		}
		// Global and room data do not fall back to each other, and a user
		// sees only their own.
		ephWantErr(t, "room type read globally", alice.GetAccountData(ctx, "org.example.room", &got), 404, "M_NOT_FOUND")
		ephWantErr(t, "global type read in room", alice.GetRoomAccountData(ctx, roomID, "org.example.cfg", &got), 404, "M_NOT_FOUND")
		ephWantErr(t, "bob reads his unset type", bob.GetAccountData(ctx, "org.example.cfg", &got), 404, "M_NOT_FOUND")

		// Initial sync carries both.
		first := ephSync(t, alice, "", 0)
		if c := ephAccountData(first.AccountData, "org.example.cfg"); c["k"] != "v1" {
			t.Errorf("initial sync account_data: %v, want org.example.cfg k=v1", first.AccountData.Events)
		}
		if c := ephAccountData(first.Rooms.Join[roomID].AccountData, "org.example.room"); c["r"] != float64(1) {
			t.Errorf("initial sync room account_data: got %v, want org.example.room r=1", c)
		}
		if ephAccountData(first.Rooms.Join[roomID].AccountData, "org.example.cfg") != nil {
			t.Error("global account data appeared in the room's account_data")
		}
		if c := ephAccountData(ephSync(t, bob, "", 0).AccountData, "org.example.cfg"); c != nil {
			t.Errorf("bob's sync shows alice's account data: %v", c)
		}

		// An incremental sync carries only what changed; a room whose only
		// news is its account data still appears, and a long-poll wakes.
		since := first.NextBatch
		if err := alice.SetAccountData(ctx, "org.example.cfg", map[string]any{"k": "v2"}); err != nil {
			t.Fatal(err)
		}
		inc := ephSync(t, alice, since, 0)
		if c := ephAccountData(inc.AccountData, "org.example.cfg"); c["k"] != "v2" {
			t.Errorf("incremental account_data: %v, want k=v2", inc.AccountData.Events)
		}
		if _, ok := inc.Rooms.Join[roomID]; ok {
			t.Error("the room appeared in an incremental sync with nothing new in it")
		}
		since = inc.NextBatch
		done := make(chan *mautrix.RespSync, 1)
		go func() {
			resp, _ := alice.SyncRequest(ctx, 20000, since, "", false, "")
			done <- resp
		}()
		start := time.Now()
		if err := alice.SetRoomAccountData(ctx, roomID, "org.example.room", map[string]any{"r": 2}); err != nil {
			t.Fatal(err)
		}
		var resp *mautrix.RespSync
		select {
		case resp = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("long-poll did not wake for room account data within 10s")
		}
		if resp == nil {
			t.Fatal("long-poll sync failed")
		}
		if c := ephAccountData(resp.Rooms.Join[roomID].AccountData, "org.example.room"); c["r"] != float64(2) {
			t.Errorf("room account data after wake-up: %v (waited %v), want r=2", c, time.Since(start))
		}
		if len(resp.AccountData.Events) != 0 {
			t.Errorf("unchanged global account data repeated: %v", resp.AccountData.Events)
		}
	})
}

func TestAccountDataErrors(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		_, alice, bob, _, roomID := ephRoom(t, engine)
		global := []any{"v3", "user", alice.UserID, "account_data", "org.example.cfg"}
		perRoom := []any{"v3", "user", alice.UserID, "rooms", roomID, "account_data", "org.example.cfg"}
		tests := []struct {
			name   string
			cli    *mautrix.Client
			method string
			body   string
			path   []any
			status int
			code   string
		}{
			{"other user sets", bob, http.MethodPut, `{}`, global, 403, "M_FORBIDDEN"},
			{"other user reads", bob, http.MethodGet, "", global, 403, "M_FORBIDDEN"},
			{"other user sets in room", bob, http.MethodPut, `{}`, perRoom, 403, "M_FORBIDDEN"},
			{"other user reads in room", bob, http.MethodGet, "", perRoom, 403, "M_FORBIDDEN"},
			{"not JSON", alice, http.MethodPut, `{"k":`, global, 400, "M_NOT_JSON"},
			{"not JSON in room", alice, http.MethodPut, `nope`, perRoom, 400, "M_NOT_JSON"},
			{"array", alice, http.MethodPut, `[1]`, global, 400, "M_BAD_JSON"},
			{"string in room", alice, http.MethodPut, `"x"`, perRoom, 400, "M_BAD_JSON"},
			{"m.fully_read", alice, http.MethodPut, `{"event_id":"$x"}`,
				[]any{"v3", "user", alice.UserID, "account_data", "m.fully_read"}, 405, "M_BAD_JSON"},
			{"m.fully_read in room", alice, http.MethodPut, `{"event_id":"$x"}`,
				[]any{"v3", "user", alice.UserID, "rooms", roomID, "account_data", "m.fully_read"}, 405, "M_BAD_JSON"},
			{"m.push_rules", alice, http.MethodPut, `{}`,
				[]any{"v3", "user", alice.UserID, "account_data", "m.push_rules"}, 405, "M_BAD_JSON"},
			{"invalid room ID", alice, http.MethodPut, `{}`,
				[]any{"v3", "user", alice.UserID, "rooms", "not-a-room", "account_data", "org.example.cfg"}, 400, "M_INVALID_PARAM"},
			{"unset type", alice, http.MethodGet, "", global, 404, "M_NOT_FOUND"},
		}
		for _, tt := range tests {
			ephWantErr(t, tt.name, ephDo(tt.cli, tt.method, tt.body, tt.path...), tt.status, tt.code)
		}
	})
}

func TestTyping(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		_, alice, bob, carol, roomID := ephRoom(t, engine)
		since := ephSync(t, bob, "", 0).NextBatch

		// A long-poll waiting for bob wakes soon after alice starts typing.
		const pollTimeout = 20 * time.Second
		done := make(chan *mautrix.RespSync, 1)
		go func() {
			resp, _ := bob.SyncRequest(ctx, int(pollTimeout.Milliseconds()), since, "", false, "")
			done <- resp
		}()
		start := time.Now()
		if _, err := alice.UserTyping(ctx, roomID, true, 30*time.Second); err != nil {
			t.Fatalf("setTyping: %v", err)
		}
		var resp *mautrix.RespSync
		select {
		case resp = <-done:
		case <-time.After(pollTimeout / 2):
			t.Fatalf("long-poll did not wake within %v of alice starting to type", pollTimeout/2)
		}
		if resp == nil {
			t.Fatal("long-poll sync failed")
		}
		if waited := time.Since(start); waited > 5*time.Second {
			t.Errorf("long-poll returned %v after typing started, want well under its %v timeout", waited, pollTimeout)
		}
		if users, ok := ephTyping(t, resp, roomID); !ok || !slices.Equal(users, []string{alice.UserID.String()}) {
			t.Fatalf("bob's sync: typing %v (present %v), want [%s]", users, ok, alice.UserID)
		}

		// The token carries the typing serial: nothing is repeated.
		again := ephSync(t, bob, resp.NextBatch, 0)
		if users, ok := ephTyping(t, again, roomID); ok {
			t.Errorf("typing repeated in the next incremental sync: %v", users)
		}

		// A member's initial sync shows who is typing now.
		if users, ok := ephTyping(t, ephSync(t, alice, "", 0), roomID); !ok || !slices.Equal(users, []string{alice.UserID.String()}) {
			t.Errorf("alice's initial sync: typing %v (present %v), want herself", users, ok)
		}

		// Stopping sends an empty list.
		if _, err := alice.UserTyping(ctx, roomID, false, 0); err != nil {
			t.Fatalf("stop typing: %v", err)
		}
		stopped := ephSync(t, bob, again.NextBatch, 10*time.Second)
		if users, ok := ephTyping(t, stopped, roomID); !ok || len(users) != 0 {
			t.Errorf("after stop: typing %v (present %v), want an empty list", users, ok)
		}

		// Leaving the room ends one's typing notice.
		if _, err := alice.UserTyping(ctx, roomID, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		typingAgain := ephSync(t, bob, stopped.NextBatch, 10*time.Second)
		if users, ok := ephTyping(t, typingAgain, roomID); !ok || len(users) != 1 {
			t.Fatalf("typing again: %v (present %v)", users, ok)
		}
		if _, err := alice.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		left := ephSync(t, bob, typingAgain.NextBatch, 10*time.Second)
		for users, ok := ephTyping(t, left, roomID); !ok; users, ok = ephTyping(t, left, roomID) {
			_ = users
			left = ephSync(t, bob, left.NextBatch, 10*time.Second)
		}
		if users, _ := ephTyping(t, left, roomID); len(users) != 0 {
			t.Errorf("after alice left: typing %v, want nobody", users)
		}

		// Errors.
		_, err := carol.UserTyping(ctx, roomID, true, time.Second)
		ephWantErr(t, "typing in a room one is not in", err, 403, "M_FORBIDDEN")
		typingPath := []any{"v3", "rooms", roomID, "typing", bob.UserID}
		ephWantErr(t, "typing as another user", ephDo(alice, http.MethodPut, `{"typing":true}`, typingPath...), 403, "M_FORBIDDEN")
		ownPath := []any{"v3", "rooms", roomID, "typing", alice.UserID}
		ephWantErr(t, "bad JSON", ephDo(alice, http.MethodPut, `{"typing":`, ownPath...), 400, "M_NOT_JSON")
		ephWantErr(t, "typing missing", ephDo(alice, http.MethodPut, `{"timeout":1000}`, ownPath...), 400, "M_BAD_JSON")
		ephWantErr(t, "typing not a bool", ephDo(alice, http.MethodPut, `{"typing":"yes"}`, ownPath...), 400, "M_BAD_JSON")
	})
}

// TestTypingTimesOut checks that a typing notification ends by itself and
// that the end wakes a waiting sync.
func TestTypingTimesOut(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		_, alice, bob, _, roomID := ephRoom(t, engine)
		if _, err := alice.UserTyping(ctx, roomID, true, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		first := ephSync(t, bob, "", 0)
		if users, _ := ephTyping(t, first, roomID); len(users) != 1 {
			t.Fatalf("initial sync typing = %v, want alice", users)
		}
		since := first.NextBatch
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp := ephSync(t, bob, since, 10*time.Second)
			if users, ok := ephTyping(t, resp, roomID); ok && len(users) == 0 {
				return
			}
			since = resp.NextBatch
			if time.Now().After(deadline) {
				t.Fatal("alice's typing did not time out within 15s")
			}
		}
	})
}

func TestReceipts(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		_, alice, bob, carol, roomID := ephRoom(t, engine)
		sent, err := alice.SendText(ctx, roomID, "hello")
		if err != nil {
			t.Fatal(err)
		}
		evID := sent.EventID
		aliceSince := ephSync(t, alice, "", 0).NextBatch
		bobSince := ephSync(t, bob, "", 0).NextBatch

		// bob's public receipt reaches alice through a waiting sync. The
		// receipt is bob's activity too, so a poll may first wake for his
		// presence: alice polls on until the receipt is there.
		type polled struct {
			resp *mautrix.RespSync
			err  error
		}
		done := make(chan polled, 1)
		go func() {
			since, deadline := aliceSince, time.Now().Add(10*time.Second)
			for {
				resp, err := alice.SyncRequest(ctx, 20000, since, "", false, "")
				if err != nil || time.Now().After(deadline) {
					done <- polled{resp, err}
					return
				}
				if _, ok := ephReceipts(t, resp, roomID)[evID]; ok {
					done <- polled{resp, nil}
					return
				}
				since = resp.NextBatch
			}
		}()
		if err := bob.SendReceipt(ctx, roomID, evID, event.ReceiptTypeRead, nil); err != nil {
			t.Fatalf("postReceipt: %v", err)
		}
		var resp *mautrix.RespSync
		select {
		case p := <-done:
			if p.err != nil || p.resp == nil {
				t.Fatalf("long-poll sync failed: %v", p.err)
			}
			resp = p.resp
		case <-time.After(15 * time.Second):
			t.Fatal("alice's long-poll did not wake for bob's receipt within 10s")
		}
		r := ephReceipts(t, resp, roomID)[evID][string(event.ReceiptTypeRead)][bob.UserID]
		if r.TS == 0 || r.ThreadID != nil {
			t.Fatalf("alice's sync: receipts %v, want bob's unthreaded m.read on %s with a ts", ephReceipts(t, resp, roomID), evID)
		}
		aliceSince = resp.NextBatch

		// A threaded receipt carries its thread_id.
		if err := bob.SendReceipt(ctx, roomID, evID, event.ReceiptTypeRead, map[string]any{"thread_id": "main"}); err != nil {
			t.Fatalf("threaded receipt: %v", err)
		}
		resp = ephSync(t, alice, aliceSince, 10*time.Second)
		if r := ephReceipts(t, resp, roomID)[evID]["m.read"][bob.UserID]; r.ThreadID == nil || *r.ThreadID != "main" {
			t.Errorf("threaded receipt: %+v, want thread_id main", r)
		}
		aliceSince = resp.NextBatch

		// bob's private receipt is his alone.
		if err := bob.SendReceipt(ctx, roomID, evID, event.ReceiptTypeReadPrivate, nil); err != nil {
			t.Fatalf("private receipt: %v", err)
		}
		own := ephSync(t, bob, bobSince, 10*time.Second)
		if _, ok := ephReceipts(t, own, roomID)[evID]["m.read.private"][bob.UserID]; !ok {
			t.Errorf("bob's own sync lacks his private receipt: %v", ephReceipts(t, own, roomID))
		}
		for name, resp := range map[string]*mautrix.RespSync{
			"alice incremental": ephSync(t, alice, aliceSince, 0),
			"alice initial":     ephSync(t, alice, "", 0),
		} {
			for ev, byType := range ephReceipts(t, resp, roomID) {
				if _, ok := byType["m.read.private"]; ok {
					t.Errorf("%s sync shows a private receipt on %s: %v", name, ev, byType)
				}
			}
		}
		if _, ok := ephSync(t, alice, aliceSince, 0).Rooms.Join[roomID]; ok {
			t.Error("bob's private receipt put the room in alice's incremental sync")
		}
		// A member's initial sync shows the public receipts.
		if _, ok := ephReceipts(t, ephSync(t, alice, "", 0), roomID)[evID]["m.read"][bob.UserID]; !ok {
			t.Error("alice's initial sync lacks bob's public receipt")
		}

		// An event this server does not have is accepted, as in Synapse.
		if err := bob.SendReceipt(ctx, roomID, "$unknown:elsewhere", event.ReceiptTypeRead, nil); err != nil {
			t.Errorf("receipt for an unknown event: %v", err)
		}

		// Errors.
		other, err := carol.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		otherEv, err := carol.SendText(ctx, other.RoomID, "elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		ephWantErr(t, "receipt when not joined", carol.SendReceipt(ctx, roomID, evID, event.ReceiptTypeRead, nil), 403, "M_FORBIDDEN")
		ephWantErr(t, "event of another room", bob.SendReceipt(ctx, roomID, otherEv.EventID, event.ReceiptTypeRead, nil), 400, "M_INVALID_PARAM")
		ephWantErr(t, "unknown receipt type", bob.SendReceipt(ctx, roomID, evID, "m.bogus", nil), 400, "M_INVALID_PARAM")
		ephWantErr(t, "empty thread_id", bob.SendReceipt(ctx, roomID, evID, event.ReceiptTypeRead, map[string]any{"thread_id": ""}), 400, "M_INVALID_PARAM")
		ephWantErr(t, "thread_id not a string", bob.SendReceipt(ctx, roomID, evID, event.ReceiptTypeRead, map[string]any{"thread_id": 1}), 400, "M_INVALID_PARAM")
		ephWantErr(t, "thread_id on m.fully_read", bob.SendReceipt(ctx, roomID, evID, "m.fully_read", map[string]any{"thread_id": "main"}), 400, "M_INVALID_PARAM")
		ephWantErr(t, "bad JSON", ephDo(bob, http.MethodPost, `{`, "v3", "rooms", roomID, "receipt", "m.read", evID), 400, "M_NOT_JSON")
	})
}

func TestReadMarkers(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		_, alice, bob, carol, roomID := ephRoom(t, engine)
		first, err := alice.SendText(ctx, roomID, "one")
		if err != nil {
			t.Fatal(err)
		}
		second, err := alice.SendText(ctx, roomID, "two")
		if err != nil {
			t.Fatal(err)
		}
		bobSince := ephSync(t, bob, "", 0).NextBatch
		aliceSince := ephSync(t, alice, "", 0).NextBatch

		if err := bob.SetReadMarkers(ctx, roomID, map[string]any{
			"m.fully_read": first.EventID, "m.read": second.EventID,
		}); err != nil {
			t.Fatalf("setReadMarker: %v", err)
		}
		var marker struct {
			EventID id.EventID `json:"event_id"`
		}
		if err := bob.GetRoomAccountData(ctx, roomID, "m.fully_read", &marker); err != nil || marker.EventID != first.EventID {
			t.Fatalf("m.fully_read account data = %+v, %v; want event_id %s", marker, err, first.EventID)
		}
		resp := ephSync(t, bob, bobSince, 10*time.Second)
		if c := ephAccountData(resp.Rooms.Join[roomID].AccountData, "m.fully_read"); c["event_id"] != first.EventID.String() {
			t.Errorf("bob's sync room account_data m.fully_read = %v, want %s", c, first.EventID)
		}
		resp = ephSync(t, alice, aliceSince, 10*time.Second)
		if _, ok := ephReceipts(t, resp, roomID)[second.EventID]["m.read"][bob.UserID]; !ok {
			t.Errorf("alice does not see the m.read that bob set through read_markers: %v", ephReceipts(t, resp, roomID))
		}
		if c := ephAccountData(resp.Rooms.Join[roomID].AccountData, "m.fully_read"); c != nil {
			t.Errorf("bob's read marker leaked into alice's sync: %v", c)
		}

		// A receipt of type m.fully_read moves the marker too.
		if err := bob.SendReceipt(ctx, roomID, second.EventID, "m.fully_read", nil); err != nil {
			t.Fatalf("m.fully_read receipt: %v", err)
		}
		if err := bob.GetRoomAccountData(ctx, roomID, "m.fully_read", &marker); err != nil || marker.EventID != second.EventID {
			t.Fatalf("after m.fully_read receipt: %+v, %v; want %s", marker, err, second.EventID)
		}

		// A private receipt through read_markers stays private.
		if err := bob.SetReadMarkers(ctx, roomID, map[string]any{"m.read.private": second.EventID}); err != nil {
			t.Fatalf("setReadMarker m.read.private: %v", err)
		}
		for ev, byType := range ephReceipts(t, ephSync(t, alice, "", 0), roomID) {
			if _, ok := byType["m.read.private"]; ok {
				t.Errorf("alice sees bob's private receipt on %s", ev)
			}
		}

		path := []any{"v3", "rooms", roomID, "read_markers"}
		ephWantErr(t, "not joined", carol.SetReadMarkers(ctx, roomID, map[string]any{"m.fully_read": first.EventID}), 403, "M_FORBIDDEN")
		ephWantErr(t, "bad JSON", ephDo(bob, http.MethodPost, `{"m.fully_read":`, path...), 400, "M_NOT_JSON")
		ephWantErr(t, "event ID not a string", ephDo(bob, http.MethodPost, `{"m.fully_read":1}`, path...), 400, "M_BAD_JSON")
		ephWantErr(t, "malformed event ID", ephDo(bob, http.MethodPost, `{"m.read":"nope"}`, path...), 400, "M_INVALID_PARAM")
	})
}
