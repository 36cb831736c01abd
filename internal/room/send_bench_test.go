package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// benchRooms creates n rooms of members local users each (version 12,
// public) and returns the service, the rooms and their members.
func benchRooms(b *testing.B, db *storage.DB, n, members int) (*room.Service, []id.RoomID, [][]id.UserID) {
	b.Helper()
	ctx := context.Background()
	key, err := keys.LoadOrGenerate(filepath.Join(b.TempDir(), "k"))
	if err != nil {
		b.Fatal(err)
	}
	svc := room.New(db, "bench.example", key, notifier.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	rooms := make([]id.RoomID, n)
	users := make([][]id.UserID, n)
	for r := range n {
		creator := id.UserID(fmt.Sprintf("@u%d_0:bench.example", r))
		roomID, _, err := svc.Create(ctx, "12", []pdu.Proto{
			state(creator, "m.room.create", "", map[string]any{"room_version": "12"}),
			state(creator, "m.room.member", creator.String(), map[string]any{"membership": "join"}),
			state(creator, "m.room.power_levels", "", map[string]any{"users": map[string]int{}}),
			state(creator, "m.room.join_rules", "", map[string]any{"join_rule": "public"}),
			state(creator, "m.room.history_visibility", "", map[string]any{"history_visibility": "shared"}),
		})
		if err != nil {
			b.Fatal(err)
		}
		rooms[r] = roomID
		users[r] = []id.UserID{creator}
		for m := 1; m < members; m++ {
			u := id.UserID(fmt.Sprintf("@u%d_%d:bench.example", r, m))
			if _, err := svc.Send(ctx, withRoom(roomID, state(u, "m.room.member", u.String(), map[string]any{"membership": "join"})), nil); err != nil {
				b.Fatal(err)
			}
			users[r] = append(users[r], u)
		}
	}
	return svc, rooms, users
}

func withRoom(roomID id.RoomID, p pdu.Proto) pdu.Proto {
	p.RoomID = roomID
	return p
}

func benchMessage(roomID id.RoomID, sender id.UserID, i int64) pdu.Proto {
	return pdu.Proto{RoomID: roomID, Type: "m.room.message", Sender: sender,
		Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"myelin-bench %d"}`, i))}
}

// BenchmarkSend measures room.Service.Send end to end (build, sign,
// authorize, persist, commit) on both engines:
//   - message: one sender, one room, with a client transaction ID as the
//     client API passes;
//   - state: a state event, which also writes a snapshot delta and current
//     state;
//   - parallel: messages into 10 rooms of 10 members from GOMAXPROCS×8
//     goroutines, the shape of the myelin-bench messaging load; ns/op is
//     the inverse of throughput.
func BenchmarkSend(b *testing.B) {
	ctx := context.Background()
	storagetest.RunB(b, func(b *testing.B, db *storage.DB) {
		svc, rooms, users := benchRooms(b, db, 10, 10)
		b.Run("message", func(b *testing.B) {
			b.ReportAllocs()
			defer storagetest.ReportCPU(b)()
			var i int64
			for b.Loop() {
				i++
				txn := &room.Txn{Device: "DEV", ID: fmt.Sprintf("m%d", i)}
				if _, err := svc.Send(ctx, benchMessage(rooms[0], users[0][1], i), txn); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("state", func(b *testing.B) {
			b.ReportAllocs()
			defer storagetest.ReportCPU(b)()
			var i int64
			for b.Loop() {
				i++
				p := state(users[1][0], "org.example.bench", fmt.Sprint(i%50), map[string]any{"n": i})
				if _, err := svc.Send(ctx, withRoom(rooms[1], p), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			defer storagetest.ReportCPU(b)()
			var seq atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					r := int(i % int64(len(rooms)))
					sender := users[r][int(i/int64(len(rooms)))%len(users[r])]
					txn := &room.Txn{Device: "DEV", ID: fmt.Sprintf("p%d", i)}
					if _, err := svc.Send(ctx, benchMessage(rooms[r], sender, i), txn); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	})
}
