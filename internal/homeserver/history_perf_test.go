package homeserver_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestMeasureHistoryPaging reports the time a user who joined last takes
// to page back through a history of messages and membership changes (each
// a new state snapshot), the case the history visibility check costs
// most. It only runs with MYELIN_MEASURE=1.
func TestMeasureHistoryPaging(t *testing.T) {
	if os.Getenv("MYELIN_MEASURE") == "" {
		t.Skip("set MYELIN_MEASURE=1 to measure")
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			srv := mxtest.Start(t, engine)
			alice := srv.Client("alice")
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 100 {
				u := srv.Client(fmt.Sprintf("m%d", i))
				if _, err := u.JoinRoomByID(ctx, created.RoomID); err != nil {
					t.Fatal(err)
				}
				for j := range 5 {
					if _, err := u.SendText(ctx, created.RoomID, fmt.Sprintf("%d.%d", i, j)); err != nil {
						t.Fatal(err)
					}
				}
			}
			bob := srv.Register("bob", "password-bob")
			if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
				t.Fatal(err)
			}
			srv.Restart() // cold caches, as for history read once
			bob = srv.Login(bob.UserID, "password-bob")
			t0 := time.Now()
			n, pages := 0, 0
			from := ""
			for {
				resp, err := bob.Messages(ctx, created.RoomID, from, "", mautrix.DirectionBackward, nil, 100)
				if err != nil {
					t.Fatal(err)
				}
				n += len(resp.Chunk)
				pages++
				if resp.End == "" {
					break
				}
				from = resp.End
			}
			t.Logf("%s: paged back through %d events in %d pages in %v", engine, n, pages, time.Since(t0).Round(time.Millisecond))
		})
	}
}
