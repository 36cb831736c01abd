package homeserver_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestSyncWakesForEveryKindOfChange chains long-polling syncs, each from
// the previous response's next_batch, with one kind of change between
// them. A sync skips the sections it was not notified about since its
// token, and a poll whose token is current waits without building: a
// change filed under the wrong kind, or a token that hides one, shows up
// here as a poll that runs into its timeout or comes back without the
// change.
func TestSyncWakesForEveryKindOfChange(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		// Alice's syncs leave her presence alone (set_presence=offline), so
		// that her own coming online is not a change between two polls.
		first, err := alice.SyncRequest(ctx, 0, "", "", false, event.PresenceOffline)
		if err != nil {
			t.Fatal(err)
		}
		since := first.NextBatch

		// poll runs change while alice long-polls from since, and returns
		// the response, which must come well before the poll's timeout.
		poll := func(what string, change func() error) *mautrix.RespSync {
			t.Helper()
			type result struct {
				resp *mautrix.RespSync
				err  error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				resp, err := alice.SyncRequest(ctx, 20000, since, "", false, event.PresenceOffline)
				done <- result{resp, err}
			}()
			time.Sleep(50 * time.Millisecond) // let the poll start waiting
			if err := change(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("%s: sync: %v", what, r.err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("%s: the poll was not woken (took %v)", what, took)
			}
			since = r.resp.NextBatch
			return r.resp
		}

		resp := poll("presence", func() error {
			return bob.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline})
		})
		if !slices.ContainsFunc(resp.Presence.Events, func(e *event.Event) bool { return e.Sender == bob.UserID }) {
			t.Fatalf("presence: %+v", resp.Presence.Events)
		}

		resp = poll("message", func() error {
			_, err := bob.SendText(ctx, roomID, "hello")
			return err
		})
		if jr, ok := resp.Rooms.Join[roomID]; !ok || len(jr.Timeline.Events) != 1 {
			t.Fatalf("message: rooms.join = %+v", resp.Rooms.Join)
		}
		msgID := resp.Rooms.Join[roomID].Timeline.Events[0].ID

		resp = poll("to-device", func() error {
			_, err := bob.SendToDevice(ctx, event.NewEventType("com.example.ping"), &mautrix.ReqSendToDevice{
				Messages: map[id.UserID]map[id.DeviceID]*event.Content{alice.UserID: {alice.DeviceID: {Raw: map[string]any{"n": 1}}}},
			})
			return err
		})
		if len(resp.ToDevice.Events) != 1 {
			t.Fatalf("to-device: %d events", len(resp.ToDevice.Events))
		}

		resp = poll("account data", func() error {
			return alice.SetAccountData(ctx, "com.example.setting", map[string]any{"on": true})
		})
		if !slices.ContainsFunc(resp.AccountData.Events, func(e *event.Event) bool { return e.Type.Type == "com.example.setting" }) {
			t.Fatalf("account data: %+v", resp.AccountData.Events)
		}

		resp = poll("receipt", func() error {
			return bob.SendReceipt(ctx, roomID, msgID, event.ReceiptTypeRead, nil)
		})
		if jr, ok := resp.Rooms.Join[roomID]; !ok || !slices.ContainsFunc(jr.Ephemeral.Events, func(e *event.Event) bool { return e.Type == event.EphemeralEventReceipt }) {
			t.Fatalf("receipt: rooms.join = %+v", resp.Rooms.Join)
		}

		resp = poll("device keys", func() error {
			_, err := bob.MakeRequest(ctx, "POST", bob.BuildClientURL("v3", "keys", "upload"), map[string]any{
				"device_keys": map[string]any{
					"user_id": bob.UserID, "device_id": bob.DeviceID,
					"algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
					"keys":       map[string]string{"curve25519:" + bob.DeviceID.String(): "key"},
				},
			}, nil)
			return err
		})
		if !slices.Contains(resp.DeviceLists.Changed, bob.UserID) {
			t.Fatalf("device keys: device_lists.changed = %v", resp.DeviceLists.Changed)
		}

		resp = poll("membership", func() error {
			_, err := carol.JoinRoomByID(ctx, roomID)
			return err
		})
		if !slices.Contains(resp.DeviceLists.Changed, carol.UserID) {
			t.Fatalf("membership: device_lists.changed = %v", resp.DeviceLists.Changed)
		}
		if s := resp.Rooms.Join[roomID].Summary; s.JoinedMemberCount == nil || *s.JoinedMemberCount != 3 {
			t.Fatalf("membership: summary = %+v", s)
		}

		// One-time key counts, which every response carries, follow
		// uploads and claims.
		otkCount := func(what string, want int) {
			t.Helper()
			resp, err := alice.SyncRequest(ctx, 0, since, "", false, event.PresenceOffline)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got := resp.DeviceOTKCount.SignedCurve25519; got != want {
				t.Fatalf("%s: signed_curve25519 count %d, want %d", what, got, want)
			}
		}
		otkCount("before any upload", 0)
		if _, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "keys", "upload"), map[string]any{
			"one_time_keys": map[string]any{
				"signed_curve25519:AAAA": map[string]any{"key": "k1"},
				"signed_curve25519:AAAB": map[string]any{"key": "k2"},
			},
		}, nil); err != nil {
			t.Fatal(err)
		}
		otkCount("after uploading two", 2)
		if _, err := bob.MakeRequest(ctx, "POST", bob.BuildClientURL("v3", "keys", "claim"), map[string]any{
			"one_time_keys": map[string]any{alice.UserID.String(): map[string]string{alice.DeviceID.String(): "signed_curve25519"}},
		}, nil); err != nil {
			t.Fatal(err)
		}
		otkCount("after bob claimed one", 1)

		// Nothing new: a poll from the latest token waits out its timeout.
		start := time.Now()
		idle, err := alice.SyncRequest(ctx, 300, since, "", false, event.PresenceOffline)
		if err != nil || len(idle.Rooms.Join) != 0 || time.Since(start) < 250*time.Millisecond {
			t.Fatalf("idle poll: %v after %v, %d rooms", err, time.Since(start), len(idle.Rooms.Join))
		}
	})
}

// TestToDeviceBacklogOverSync: a device's to-device backlog arrives over
// several syncs, at most 100 messages each; the token of a cut-off
// response brings the rest at once, and nothing is lost or repeated.
func TestToDeviceBacklogOverSync(t *testing.T) {
	ctx := context.Background()
	srv := mxtest.Start(t, "sqlite")
	alice, bob := srv.Client("alice"), srv.Client("bob")
	first, err := alice.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	const total = 150
	for i := range total {
		if _, err := bob.SendToDevice(ctx, event.NewEventType("com.example.n"), &mautrix.ReqSendToDevice{
			Messages: map[id.UserID]map[id.DeviceID]*event.Content{alice.UserID: {alice.DeviceID: {Raw: map[string]any{"n": i}}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	since := first.NextBatch
	var got []int
	for page := 0; len(got) < total && page < 5; page++ {
		start := time.Now()
		resp, err := alice.SyncRequest(ctx, 20000, since, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("page %d: the poll waited although messages were left", page)
		}
		if n := len(resp.ToDevice.Events); n > 100 {
			t.Fatalf("page %d: %d to-device messages, more than 100", page, n)
		}
		for _, ev := range resp.ToDevice.Events {
			n, _ := ev.Content.Raw["n"].(float64)
			got = append(got, int(n))
		}
		since = resp.NextBatch
	}
	if len(got) != total {
		t.Fatalf("got %d messages, want %d", len(got), total)
	}
	for i, n := range got {
		if n != i {
			t.Fatalf("message %d is n=%d: lost, repeated or out of order", i, n)
		}
	}
	// All acknowledged: the next poll waits out its timeout.
	start := time.Now()
	resp, err := alice.SyncRequest(ctx, 300, since, "", false, "")
	if err != nil || len(resp.ToDevice.Events) != 0 || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("after the backlog: %d messages after %v (%v)", len(resp.ToDevice.Events), time.Since(start), err)
	}
}

// TestSyncChainSeesEveryEventOnce sends into several rooms from several
// users at once while another user chains long-polls from each
// next_batch. Every message must reach that chain exactly once: a sync
// whose "now" covered an event its room index or skipped sections did not
// show would lose it for good, and one that showed it twice would repeat
// it.
func TestSyncChainSeesEveryEventOnce(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		reader := srv.Client("reader")
		const rooms, senders, perSender = 4, 3, 25
		var roomIDs []id.RoomID
		var clients []*mautrix.Client
		for r := range rooms {
			created, err := reader.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			roomIDs = append(roomIDs, created.RoomID)
			for range senders {
				c := srv.Client(fmt.Sprintf("s%d_", r))
				if _, err := c.JoinRoomByID(ctx, created.RoomID); err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
			}
		}
		filter := `{"room":{"timeline":{"limit":1000,"types":["m.room.message"]}}}`
		first, err := reader.SyncRequest(ctx, 0, "", filter, false, "")
		if err != nil {
			t.Fatal(err)
		}
		want := map[id.EventID]bool{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, c := range clients {
			roomID := roomIDs[i/senders]
			wg.Go(func() {
				for n := range perSender {
					resp, err := c.SendText(ctx, roomID, fmt.Sprintf("m%d", n))
					if err != nil {
						t.Errorf("send: %v", err)
						return
					}
					mu.Lock()
					want[resp.EventID] = true
					mu.Unlock()
				}
			})
		}
		seen := map[id.EventID]int{}
		since := first.NextBatch
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := reader.SyncRequest(ctx, 500, since, filter, false, "")
			if err != nil {
				t.Fatal(err)
			}
			for _, jr := range resp.Rooms.Join {
				if jr.Timeline.Limited {
					t.Fatal("a timeline was limited")
				}
				for _, ev := range jr.Timeline.Events {
					seen[ev.ID]++
				}
			}
			since = resp.NextBatch
			select {
			case <-done:
				mu.Lock()
				complete := len(seen) >= len(want)
				mu.Unlock()
				if complete || time.Now().After(deadline) {
					goto check
				}
			default:
				if time.Now().After(deadline) {
					t.Fatal("senders did not finish")
				}
			}
		}
	check:
		mu.Lock()
		defer mu.Unlock()
		if len(want) != rooms*senders*perSender {
			t.Fatalf("%d messages sent, want %d", len(want), rooms*senders*perSender)
		}
		for evID := range want {
			if seen[evID] != 1 {
				t.Errorf("%s seen %d times", evID, seen[evID])
			}
		}
		if len(seen) != len(want) {
			t.Errorf("%d events seen, %d sent", len(seen), len(want))
		}
	})
}
