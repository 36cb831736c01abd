package room_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// TestEventAtTimestampGaps: the closest event in each direction, the
// stream position bound, and the gap flag going backward: an event held
// without children that is no forward extremity borders history this
// server lacks.
func TestEventAtTimestampGaps(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		key, err := keys.LoadOrGenerate(filepath.Join(t.TempDir(), "k"))
		if err != nil {
			t.Fatal(err)
		}
		svc := room.New(db, "test.org", key, notifier.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		alice := id.UserID("@alice:test.org")
		roomID, _, err := svc.Create(ctx, "12", []pdu.Proto{
			state(alice, "m.room.create", "", map[string]any{"room_version": "12"}),
			state(alice, "m.room.member", alice.String(), map[string]any{"membership": "join"}),
			state(alice, "m.room.power_levels", "", map[string]any{"users": map[string]int{}}),
		})
		if err != nil {
			t.Fatal(err)
		}
		msg := pdu.Proto{RoomID: roomID, Type: "m.room.message", Sender: alice, Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`)}
		send := func() *room.Stored {
			t.Helper()
			time.Sleep(5 * time.Millisecond)
			ev, err := svc.Send(ctx, msg, nil)
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}
		m1, m2 := send(), send()
		at := func(what string, ts int64, forward bool, maxPos int64, want id.EventID, wantGap bool) {
			t.Helper()
			ev, gap, err := svc.EventAtTimestamp(ctx, roomID, ts, forward, maxPos)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			got := id.EventID("")
			if ev != nil {
				got = ev.ID
			}
			if got != want || gap != wantGap {
				t.Errorf("%s: %s (gap %v), want %s (gap %v)", what, got, gap, want, wantGap)
			}
		}
		future := time.Now().Add(time.Hour).UnixMilli()
		at("backward from the future", future, false, 0, m2.ID, false)
		at("forward from m1", m1.OriginServerTS, true, 0, m1.ID, false)
		at("backward from m2 bounded at m1's position", m2.OriginServerTS, false, m1.StreamPos, m1.ID, false)
		at("forward from the future", future, true, 0, "", false)

		// An event held without its children: what came after it here is
		// unknown.
		time.Sleep(5 * time.Millisecond)
		island, err := svc.BuildEvent(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.StoreBackfilled(ctx, "test.org", roomID, []*pdu.Event{island}); err != nil {
			t.Fatal(err)
		}
		at("backward to an event without children", future, false, 0, island.ID, true)
		at("forward to the same event", island.OriginServerTS, true, 0, island.ID, false)
	})
}
