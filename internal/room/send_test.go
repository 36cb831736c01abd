package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
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

// TestConcurrentSendsAcrossRooms sends messages into several rooms at
// once, each with a client transaction ID and every one retried
// concurrently (the retry may land in another room, as a client reusing a
// transaction ID would), and checks that each transaction ID produced
// exactly one event, that retries got that event back, that every event
// has its own stream position, and that each room's timeline is a chain
// with one forward extremity: no two events follow the same one.
func TestConcurrentSendsAcrossRooms(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		key, err := keys.LoadOrGenerate(filepath.Join(t.TempDir(), "k"))
		if err != nil {
			t.Fatal(err)
		}
		svc := room.New(db, "test.org", key, notifier.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		alice := id.UserID("@alice:test.org")
		const nRooms, perRoom = 4, 15
		rooms := make([]id.RoomID, nRooms)
		for r := range rooms {
			rooms[r], _, err = svc.Create(ctx, "12", []pdu.Proto{
				// Distinct content: v12 room IDs are create event hashes.
				state(alice, "m.room.create", "", map[string]any{"room_version": "12", "org.example.n": r}),
				state(alice, "m.room.member", alice.String(), map[string]any{"membership": "join"}),
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			got = map[string][]id.EventID{} // txn ID → event of each attempt
		)
		for r := range nRooms {
			for i := range perRoom {
				txnID := fmt.Sprintf("t%d-%d", r, i)
				for attempt := range 2 {
					target := rooms[(r+attempt)%nRooms]
					wg.Go(func() {
						content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": txnID})
						ev, err := svc.Send(ctx, pdu.Proto{RoomID: target, Type: "m.room.message", Sender: alice, Content: content},
							&room.Txn{Device: "DEV", ID: txnID})
						if err != nil {
							t.Errorf("send %s: %v", txnID, err)
							return
						}
						mu.Lock()
						got[txnID] = append(got[txnID], ev.ID)
						mu.Unlock()
					})
				}
			}
		}
		wg.Wait()
		var sent []id.EventID
		for txnID, evs := range got {
			if len(evs) != 2 || evs[0] != evs[1] {
				t.Errorf("transaction %s: attempts got %v, want the same event twice", txnID, evs)
			}
			sent = append(sent, evs[0])
		}
		if len(sent) != nRooms*perRoom {
			t.Fatalf("%d transactions answered, want %d", len(sent), nRooms*perRoom)
		}
		positions := map[int64]id.EventID{}
		var total int
		for _, roomID := range rooms {
			var evs []*room.Stored
			for _, evID := range sent {
				ev, err := svc.Event(ctx, evID)
				if err != nil {
					t.Fatal(err)
				}
				if ev.RoomID() == roomID {
					evs = append(evs, ev)
				}
			}
			total += len(evs)
			var extremities int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM forward_extremities WHERE room_id = $1`, roomID.String()).Scan(&extremities); err != nil {
				t.Fatal(err)
			}
			if extremities != 1 {
				t.Errorf("%s has %d forward extremities, want 1", roomID, extremities)
			}
			byPrev := map[id.EventID]bool{}
			for _, ev := range evs {
				if other, dup := positions[ev.StreamPos]; dup {
					t.Errorf("%s and %s share stream position %d", ev.ID, other, ev.StreamPos)
				}
				positions[ev.StreamPos] = ev.ID
				if len(ev.PrevEvents) != 1 {
					t.Errorf("%s has %d prev events, want 1", ev.ID, len(ev.PrevEvents))
					continue
				}
				if byPrev[ev.PrevEvents[0]] {
					t.Errorf("two events in %s follow %s: the room forked", roomID, ev.PrevEvents[0])
				}
				byPrev[ev.PrevEvents[0]] = true
			}
		}
		if total != nRooms*perRoom {
			t.Errorf("%d events stored, want %d", total, nRooms*perRoom)
		}
	})
}

// TestPruneTransactionIDs: a transaction ID is remembered until pruned;
// after that the same ID makes a new event.
func TestPruneTransactionIDs(t *testing.T) {
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
		})
		if err != nil {
			t.Fatal(err)
		}
		send := func() id.EventID {
			t.Helper()
			ev, err := svc.Send(ctx, pdu.Proto{RoomID: roomID, Type: "m.room.message", Sender: alice, Content: json.RawMessage(`{"body":"x"}`)},
				&room.Txn{Device: "DEV", ID: "t1"})
			if err != nil {
				t.Fatal(err)
			}
			return ev.ID
		}
		first := send()
		if n, err := svc.PruneTransactionIDs(ctx, time.Now().Add(-room.TxnIDMemory)); err != nil || n != 0 {
			t.Fatalf("pruning what is a day old: %d, %v; want 0", n, err)
		}
		if again := send(); again != first {
			t.Fatalf("retry within the window: %s, want %s", again, first)
		}
		if n, err := svc.PruneTransactionIDs(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
			t.Fatalf("pruning everything: %d, %v; want 1", n, err)
		}
		if later := send(); later == first {
			t.Fatal("a forgotten transaction ID still answered with the old event")
		}
	})
}
