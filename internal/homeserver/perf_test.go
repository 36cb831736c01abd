package homeserver_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/mxtest"
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
