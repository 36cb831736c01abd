package homeserver_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/pdu"
)

// TestMeasureMessaging reports the figures the closing notes quote: the time
// for 1,000 sequential sends, and send-to-/sync latency for another user.
// It only runs with MYELIN_MEASURE=1, since timings belong in reports, not
// in pass/fail.
func TestMeasureMessaging(t *testing.T) {
	if os.Getenv("MYELIN_MEASURE") == "" {
		t.Skip("set MYELIN_MEASURE=1 to measure")
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			srv := mxtest.Start(t, engine)
			alice, bob := srv.Client("alice"), srv.Client("bob")
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			for i := range 1000 {
				if _, err := alice.SendText(ctx, created.RoomID, fmt.Sprintf("seq %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			seq := time.Since(t0)

			sync, err := bob.SyncRequest(ctx, 0, "", "", false, "")
			if err != nil {
				t.Fatal(err)
			}
			since := sync.NextBatch
			var lat []time.Duration
			for i := range 300 {
				got := make(chan time.Time, 1)
				go func() {
					for {
						r, err := bob.SyncRequest(ctx, 30000, since, "", false, "")
						if err != nil {
							t.Error(err)
							got <- time.Now()
							return
						}
						since = r.NextBatch
						if len(r.Rooms.Join) > 0 {
							got <- time.Now()
							return
						}
					}
				}()
				time.Sleep(2 * time.Millisecond) // let the long-poll park
				sent := time.Now()
				if _, err := alice.SendText(ctx, created.RoomID, fmt.Sprintf("lat %d", i)); err != nil {
					t.Fatal(err)
				}
				lat = append(lat, (<-got).Sub(sent))
			}
			slices.Sort(lat)
			t.Logf("%s: 1000 sequential sends in %v (%.0f/s); send→sync latency p50 %v p99 %v max %v",
				engine, seq.Round(time.Millisecond), 1000/seq.Seconds(),
				lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
		})
	}
}

// TestMeasureFederatedJoin reports the figure the federation closing note
// quotes: how long a user of one server takes to join a room of 1,000
// members that lives on another, and the send→remote-/sync latency after.
func TestMeasureFederatedJoin(t *testing.T) {
	if os.Getenv("MYELIN_MEASURE") == "" {
		t.Skip("set MYELIN_MEASURE=1 to measure")
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			hs := mxtest.Federation(t, engine, 2)
			alice := hs[0].Client("alice")
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			for i := range 999 {
				u, err := hs[0].Users.Create(ctx, fmt.Sprintf("member%d", i), "", false)
				if err != nil {
					t.Fatal(err)
				}
				sk := u.String()
				if _, err := hs[0].Rooms.Send(ctx, pdu.Proto{Type: "m.room.member", StateKey: &sk, Sender: u,
					Content: []byte(`{"membership":"join"}`), RoomID: created.RoomID}, nil); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%s: filled the room with 1,000 members in %v", engine, time.Since(t0).Round(time.Millisecond))
			bob := hs[1].Client("bob")
			t0 = time.Now()
			if _, err := bob.JoinRoom(ctx, created.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err != nil {
				t.Fatal(err)
			}
			join := time.Since(t0)
			members, err := bob.JoinedMembers(ctx, created.RoomID)
			if err != nil || len(members.Joined) != 1001 {
				t.Fatalf("bob sees %d joined members (%v), want 1001", len(members.Joined), err)
			}
			carol := hs[1].Client("carol")
			t0 = time.Now()
			if _, err := carol.JoinRoomByID(ctx, created.RoomID); err != nil {
				t.Fatal(err)
			}
			warm := time.Since(t0)

			sync, err := bob.SyncRequest(ctx, 0, "", `{"room":{"timeline":{"limit":1}}}`, false, "")
			if err != nil {
				t.Fatal(err)
			}
			since := sync.NextBatch
			var lat []time.Duration
			for i := range 100 {
				sent := time.Now()
				if _, err := alice.SendText(ctx, created.RoomID, fmt.Sprintf("fed %d", i)); err != nil {
					t.Fatal(err)
				}
				for {
					r, err := bob.SyncRequest(ctx, 30000, since, "", false, "")
					if err != nil {
						t.Fatal(err)
					}
					since = r.NextBatch
					if jr, ok := r.Rooms.Join[created.RoomID]; ok && len(jr.Timeline.Events) > 0 {
						break
					}
				}
				lat = append(lat, time.Since(sent))
			}
			slices.Sort(lat)
			t.Logf("%s: remote join of a 1,000-member room %v (second local user, room already here: %v); "+
				"send→remote /sync p50 %v p99 %v", engine, join.Round(time.Millisecond), warm.Round(time.Millisecond),
				lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100].Round(10*time.Microsecond))
		})
	}
}

// TestMeasureForkResolution reports how long two servers take to converge
// after a partition in a room with 10,000 state events (members): each side
// changes the topic and power levels while cut off, then the time from
// reconnecting to identical state on both is measured. SQLite only; the
// room takes a while to fill.
func TestMeasureForkResolution(t *testing.T) {
	if os.Getenv("MYELIN_MEASURE") == "" {
		t.Skip("set MYELIN_MEASURE=1 to measure")
	}
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 2)
	alice := hs[0].Client("alice")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	roomID := created.RoomID
	members := 10000
	if v := os.Getenv("MYELIN_MEASURE_MEMBERS"); v != "" {
		fmt.Sscan(v, &members)
	}
	t0 := time.Now()
	for i := range members {
		u := id.UserID(fmt.Sprintf("@m%d:%s", i, hs[0].Config.ServerName))
		if _, err := hs[0].Users.Create(ctx, fmt.Sprintf("m%d", i), "", false); err != nil {
			t.Fatal(err)
		}
		sk := u.String()
		if _, err := hs[0].Rooms.Send(ctx, pdu.Proto{Type: "m.room.member", StateKey: &sk, Sender: u,
			Content: []byte(`{"membership":"join"}`), RoomID: roomID}, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("filled the room with %d members in %v", members, time.Since(t0).Round(time.Millisecond))
	bob := hs[1].Client("bob")
	t0 = time.Now()
	if _, err := bob.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("remote join of the %d-member room: %v", members+1, time.Since(t0).Round(time.Millisecond))
	var pl event.PowerLevelsEventContent
	if err := alice.StateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	pl.SetUserLevel(bob.UserID, 100)
	if _, err := alice.SendStateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	// Convergence is watched in process (the current state maps), since
	// polling /state for 10,000 events would load the servers more than
	// the resolution does; the final state is then compared over HTTP.
	same := func() bool {
		a, errA := hs[0].Rooms.CurrentState(ctx, roomID)
		b, errB := hs[1].Rooms.CurrentState(ctx, roomID)
		if errA != nil || errB != nil || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if b[k].ID != v.ID {
				return false
			}
		}
		return true
	}
	waitSame := func(what string) time.Duration {
		start := time.Now()
		deadline := start.Add(5 * time.Minute)
		for !same() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no convergence", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitSame("before the fork")
	hs[0].Partition(true)
	hs[1].Partition(true)
	if _, err := alice.SendStateEvent(ctx, roomID, event.StateTopic, "", &event.TopicEventContent{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	pl.SetUserLevel(id.UserID(fmt.Sprintf("@m1:%s", hs[0].Config.ServerName)), 50)
	if _, err := alice.SendStateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendStateEvent(ctx, roomID, event.StateTopic, "", &event.TopicEventContent{Topic: "b"}); err != nil {
		t.Fatal(err)
	}
	pl.SetUserLevel(id.UserID(fmt.Sprintf("@m2:%s", hs[0].Config.ServerName)), 50)
	if _, err := bob.SendStateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	hs[0].Partition(false)
	hs[1].Partition(false)
	took := waitSame("after the fork")
	a, errA := stateOf(ctx, alice, roomID)
	b, errB := stateOf(ctx, bob, roomID)
	if errA != nil || errB != nil || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("clients see different state after the fork (%v, %v)", errA, errB)
	}
	t.Logf("fork across %d state events: identical state on both servers %v after reconnecting", members+5, took.Round(time.Millisecond))
}
