package clientsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/relations"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
	"github.com/myelin-chat/myelin/internal/typing"
)

func stateProto(roomID id.RoomID, sender id.UserID, typ, key string, content any) pdu.Proto {
	raw, _ := json.Marshal(content)
	return pdu.Proto{RoomID: roomID, Type: typ, StateKey: &key, Sender: sender, Content: raw}
}

// syncFixture is a sync service over rooms the measured user is joined
// to, each with a few other members and some messages.
type syncFixture struct {
	sync *clientsync.Service
	user id.UserID
	// beforeLast is the stream position just before the last message, so
	// an incremental sync from it returns one event in one room.
	beforeLast, now int64
	// woken is the next_batch of a sync made just before the last
	// message: what a long-poll woken by that message holds.
	woken *clientsync.Token
}

func newSyncFixture(b *testing.B, db *storage.DB, rooms, members, messages int) *syncFixture {
	b.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	key, err := keys.LoadOrGenerate(filepath.Join(b.TempDir(), "k"))
	if err != nil {
		b.Fatal(err)
	}
	n := notifier.New()
	// Wired as in homeserver, so the bundled aggregations are measured.
	rels := relations.New(db, "bench.example")
	rs := room.New(db, "bench.example", key, n, log, room.WithIndexer(rels), room.WithDecorator(rels))
	if err := rs.EnableRecentIndex(ctx); err != nil {
		b.Fatal(err)
	}
	ty := typing.New(n, rs.LocalJoined, log)
	b.Cleanup(ty.Close)
	svc := clientsync.New(db, rs, n, accountdata.New(db, n), receipts.New(db, n, rs.LocalJoined), ty, log)
	user := id.UserID(fmt.Sprintf("@me%d:bench.example", rooms))
	var last id.RoomID
	for r := range rooms {
		creator := id.UserID(fmt.Sprintf("@c%d:bench.example", r))
		roomID, _, err := rs.Create(ctx, "12", []pdu.Proto{
			stateProto("", creator, "m.room.create", "", map[string]any{"room_version": "12"}),
			stateProto("", creator, "m.room.member", creator.String(), map[string]any{"membership": "join"}),
			stateProto("", creator, "m.room.power_levels", "", map[string]any{"users": map[string]int{}}),
			stateProto("", creator, "m.room.join_rules", "", map[string]any{"join_rule": "public"}),
			stateProto("", creator, "m.room.name", "", map[string]any{"name": fmt.Sprintf("Room %d", r)}),
		})
		if err != nil {
			b.Fatal(err)
		}
		joiners := []id.UserID{user}
		for m := 2; m < members; m++ {
			joiners = append(joiners, id.UserID(fmt.Sprintf("@m%d_%d:bench.example", r, m)))
		}
		for _, u := range joiners {
			if _, err := rs.Send(ctx, stateProto(roomID, u, "m.room.member", u.String(), map[string]any{"membership": "join"}), nil); err != nil {
				b.Fatal(err)
			}
		}
		for i := range messages {
			content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
			if _, err := rs.Send(ctx, pdu.Proto{RoomID: roomID, Type: "m.room.message", Sender: joiners[i%len(joiners)], Content: content}, nil); err != nil {
				b.Fatal(err)
			}
		}
		last = roomID
	}
	f := &syncFixture{sync: svc, user: user}
	if f.beforeLast, err = svc.CurrentPosition(ctx); err != nil {
		b.Fatal(err)
	}
	pre, err := svc.Sync(ctx, clientsync.Request{User: user, Device: "DEV"})
	if err != nil {
		b.Fatal(err)
	}
	woken, err := clientsync.ParseToken(pre.NextBatch)
	if err != nil {
		b.Fatal(err)
	}
	f.woken = &woken
	content := json.RawMessage(`{"msgtype":"m.text","body":"the news"}`)
	if _, err := rs.Send(ctx, pdu.Proto{RoomID: last, Type: "m.room.message", Sender: user, Content: content}, nil); err != nil {
		b.Fatal(err)
	}
	if f.now, err = svc.CurrentPosition(ctx); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkSync measures assembling /sync responses for a user joined to
// N rooms of 5 members and 10 messages each, on both engines:
//   - initial: no since token, default filter (full state and a timeline
//     per room);
//   - incremental: one new message in one room since the token, the
//     response a long-poll returns when woken by a send (the myelin-bench
//     messaging load is made of these);
//   - woken: the same, from the token a client would hold (it carries the
//     notifier generation, so only the sections notified since are read,
//     and on SQLite the recent events index answers for the rooms);
//   - nothing-new: a since token that is current, which returns an empty
//     response (timeout 0).
func BenchmarkSync(b *testing.B) {
	ctx := context.Background()
	storagetest.RunB(b, func(b *testing.B, db *storage.DB) {
		for _, rooms := range []int{10, 100} {
			f := newSyncFixture(b, db, rooms, 5, 10)
			reqs := []struct {
				name  string
				since *clientsync.Token
				check func(*clientsync.Response) error
			}{
				{"initial", nil, func(r *clientsync.Response) error {
					if len(r.Rooms.Join) != rooms {
						return fmt.Errorf("initial sync has %d joined rooms, want %d", len(r.Rooms.Join), rooms)
					}
					return nil
				}},
				{"incremental", &clientsync.Token{Pos: f.beforeLast}, func(r *clientsync.Response) error {
					if len(r.Rooms.Join) != 1 {
						return fmt.Errorf("incremental sync has %d joined rooms, want 1", len(r.Rooms.Join))
					}
					return nil
				}},
				{"woken", f.woken, func(r *clientsync.Response) error {
					if len(r.Rooms.Join) != 1 {
						return fmt.Errorf("woken sync has %d joined rooms, want 1", len(r.Rooms.Join))
					}
					return nil
				}},
				{"nothing-new", &clientsync.Token{Pos: f.now}, func(r *clientsync.Response) error {
					if len(r.Rooms.Join) != 0 {
						return fmt.Errorf("sync at the current position has %d joined rooms, want 0", len(r.Rooms.Join))
					}
					return nil
				}},
			}
			for _, rq := range reqs {
				b.Run(fmt.Sprintf("rooms=%d/%s", rooms, rq.name), func(b *testing.B) {
					b.ReportAllocs()
					defer storagetest.ReportCPU(b)()
					for b.Loop() {
						resp, err := f.sync.Sync(ctx, clientsync.Request{User: f.user, Device: "DEV", Since: rq.since})
						if err != nil {
							b.Fatal(err)
						}
						if err := rq.check(resp); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	})
}
