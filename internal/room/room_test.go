package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

func state(sender id.UserID, typ, key string, content any) pdu.Proto {
	raw, _ := json.Marshal(content)
	return pdu.Proto{Type: typ, StateKey: &key, Sender: sender, Content: raw}
}

// TestStateSnapshotsAreDeltasAndReload checks that state survives a fresh
// load from the database across delta chains and full copies, that the
// state at an old event is what it was then, and that messages add no
// state rows.
func TestStateSnapshotsAreDeltasAndReload(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		key, err := keys.LoadOrGenerate(filepath.Join(t.TempDir(), "k"))
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		svc := room.New(db, "test.org", key, notifier.New(), log)
		alice := id.UserID("@alice:test.org")
		roomID, _, err := svc.Create(ctx, "12", []pdu.Proto{
			state(alice, "m.room.create", "", map[string]any{"room_version": "12"}),
			state(alice, "m.room.member", alice.String(), map[string]any{"membership": "join"}),
			state(alice, "m.room.power_levels", "", map[string]any{"users": map[string]int{}, "state_default": 50}),
		})
		if err != nil {
			t.Fatal(err)
		}
		var early *room.Stored
		for i := range 80 {
			ev, err := svc.Send(ctx, pdu.Proto{RoomID: roomID, Type: "org.example.counter", StateKey: ptr(fmt.Sprint(i % 10)),
				Sender: alice, Content: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}, nil)
			if err != nil {
				t.Fatalf("state event %d: %v", i, err)
			}
			if i == 15 {
				early = ev
			}
			msg, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": fmt.Sprint(i)})
			if _, err := svc.Send(ctx, pdu.Proto{RoomID: roomID, Type: "m.room.message", Sender: alice, Content: msg}, nil); err != nil {
				t.Fatal(err)
			}
		}
		// A fresh service reads everything back from the database.
		fresh := room.New(db, "test.org", key, notifier.New(), log)
		st, err := fresh.CurrentState(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 3+10 {
			t.Fatalf("current state has %d entries, want 13", len(st))
		}
		for k := range 10 {
			ev, err := fresh.CurrentStateEvent(ctx, roomID, "org.example.counter", fmt.Sprint(k))
			if err != nil || ev == nil {
				t.Fatalf("counter %d: %v", k, err)
			}
			if want := fmt.Sprintf(`{"n":%d}`, 70+k); string(ev.Content) != want {
				t.Fatalf("counter %d = %s, want %s", k, ev.Content, want)
			}
		}
		old, err := fresh.Event(ctx, early.ID)
		if err != nil {
			t.Fatal(err)
		}
		at, err := fresh.StateAt(ctx, old, true)
		if err != nil {
			t.Fatal(err)
		}
		ref := at[room.StateKeyOf("org.example.counter", "5")]
		if ev, err := fresh.Event(ctx, ref.ID); err != nil || string(ev.Content) != `{"n":15}` {
			t.Fatalf("state at event 15 has counter 5 = %v (%v)", ev, err)
		}
		// 83 state events; 160 messages add nothing. Deltas keep the row
		// count near one per state event plus the occasional full copy.
		var rows int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM state_snapshot_entries`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows > 83+3*13 {
			t.Fatalf("%d snapshot rows for 83 state changes: state is not stored as deltas", rows)
		}
	})
}

func ptr(s string) *string { return &s }
