package notifications

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// BenchmarkEvent1000Members is the worker's cost per message in a room of
// a thousand local members with the default rules: every member's rules
// evaluated (each notifies), then, in "record", the thousand notification
// rows and count increments written in one transaction, as a batch of one
// event. The room's members come from the cache, as for every event but
// the first after a state change.
func BenchmarkEvent1000Members(b *testing.B) {
	storagetest.RunB(b, func(b *testing.B, db *storage.DB) {
		ctx := context.Background()
		n := notifier.New()
		rules := push.New(db, accountdata.New(db, n))
		s := New(db, "example.org", rules, nil, n, slog.New(slog.NewTextHandler(io.Discard, nil)))
		roomID := id.RoomID("!bench:example.org")
		ri := &roomInfo{joined: 1001, local: map[id.UserID]string{}, pl: &event.PowerLevelsEventContent{}}
		for i := range 1000 {
			u := id.UserID(fmt.Sprintf("@user%d:example.org", i))
			ri.local[u] = fmt.Sprintf("User Number %d", i)
			if _, err := rules.Compiled(ctx, u); err != nil {
				b.Fatal(err)
			}
		}
		s.cache[roomID] = ri
		pos := int64(0)
		newEvent := func() *room.Stored {
			pos++
			raw, _ := json.Marshal(map[string]any{"type": "m.room.message", "sender": "@alice:remote.example", "room_id": roomID,
				"origin_server_ts": 1, "depth": pos, "auth_events": []string{}, "prev_events": []string{},
				"content": map[string]any{"msgtype": "m.text", "body": "Is anyone up for lunch at the usual place around noon today?"}})
			ev, err := pdu.ParseTrusted("12", id.EventID(fmt.Sprintf("$e%d", pos)), raw)
			if err != nil {
				b.Fatal(err)
			}
			return &room.Stored{Event: ev, StreamPos: pos}
		}
		b.Run("evaluate", func(b *testing.B) {
			defer storagetest.ReportCPU(b)()
			for b.Loop() {
				ps, _, err := s.evaluateEvent(ctx, newEvent())
				if err != nil || len(ps) != 1000 {
					b.Fatalf("%d notified, %v", len(ps), err)
				}
			}
		})
		b.Run("record", func(b *testing.B) {
			defer storagetest.ReportCPU(b)()
			for b.Loop() {
				ps, marks, err := s.evaluateEvent(ctx, newEvent())
				if err != nil {
					b.Fatal(err)
				}
				if err := db.WriteTx(ctx, func(tx *storage.Tx) error {
					_, err := s.record(ctx, tx, ps, nil)
					_ = marks
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
