package slidingsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/relations"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/slidingsync"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
	"github.com/myelin-chat/myelin/internal/typing"
)

func stateProto(roomID id.RoomID, sender id.UserID, typ, key string, content any) pdu.Proto {
	raw, _ := json.Marshal(content)
	return pdu.Proto{RoomID: roomID, Type: typ, StateKey: &key, Sender: sender, Content: raw}
}

// fixture is a user in many rooms, wired as homeserver wires them.
type fixture struct {
	ss    *slidingsync.Service
	sync  *clientsync.Service
	rooms *room.Service
	user  id.UserID
	last  id.RoomID
}

func newFixture(b *testing.B, db *storage.DB, rooms, members, messages int) *fixture {
	b.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	key, err := keys.LoadOrGenerate(filepath.Join(b.TempDir(), "k"))
	if err != nil {
		b.Fatal(err)
	}
	n := notifier.New()
	rels := relations.New(db, "bench.example")
	bumps := slidingsync.NewBumps(db)
	rs := room.New(db, "bench.example", key, n, log, room.WithIndexer(rels), room.WithIndexer(bumps), room.WithDecorator(rels))
	if err := rs.EnableRecentIndex(ctx); err != nil {
		b.Fatal(err)
	}
	ty := typing.New(n, rs.LocalJoined, log)
	b.Cleanup(ty.Close)
	ad, rc := accountdata.New(db, n), receipts.New(db, n, rs.LocalJoined)
	cs := clientsync.New(db, rs, n, ad, rc, ty, log)
	ss, err := slidingsync.New(ctx, slidingsync.Deps{DB: db, Rooms: rs, Sync: cs, Notifier: n, AccountData: ad,
		Receipts: rc, Typing: ty, Bumps: bumps, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	f := &fixture{ss: ss, sync: cs, rooms: rs, user: id.UserID(fmt.Sprintf("@me%d:bench.example", rooms))}
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
		joiners := []id.UserID{f.user}
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
		f.last = roomID
	}
	return f
}

// window is what Element X asks for first: the 20 most recent rooms with
// their name, avatar, encryption and the timeline senders' members.
func window(start, end int) slidingsync.Req {
	return slidingsync.Req{Lists: map[string]slidingsync.ListReq{"all": {
		Ranges: [][]int64{{int64(start), int64(end)}},
		RoomDetails: slidingsync.RoomDetails{TimelineLimit: 1, RequiredState: slidingsync.RequiredState{Include: [][]string{
			{"m.room.name", ""}, {"m.room.avatar", ""}, {"m.room.encryption", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"},
		}}},
	}}}
}

// benchRooms is the number of rooms of the fixture: 1,000 as in the
// issue, fewer with MYELIN_BENCH_ROOMS for a quick run.
func benchRooms() int {
	if n, err := strconv.Atoi(os.Getenv("MYELIN_BENCH_ROOMS")); err == nil && n > 0 {
		return n
	}
	return 1000
}

// percentiles reports p50 and p99 of the durations as metrics.
func percentiles(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	if len(ds) == 0 {
		return
	}
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[min(len(ds)-1, len(ds)*99/100)].Microseconds()), "p99-µs")
}

// BenchmarkSlidingSync measures sliding sync for a user in N rooms of 50
// members with 20 messages each:
//   - first-window: a new connection's first response, 20 rooms;
//   - woken: the response to a request from the pos held before one new
//     message, in the room that message moves to the top (what a woken
//     long-poll builds);
//   - conn-memory: the heap held per connection after its first window;
//   - sync-initial: the same user's initial /sync, for comparison.
func BenchmarkSlidingSync(b *testing.B) {
	ctx := context.Background()
	storagetest.RunB(b, func(b *testing.B, db *storage.DB) {
		rooms := benchRooms()
		f := newFixture(b, db, rooms, 50, 20)
		b.Run(fmt.Sprintf("rooms=%d/first-window", rooms), func(b *testing.B) {
			b.ReportAllocs()
			defer storagetest.ReportCPU(b)()
			var ds []time.Duration
			size := 0
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				resp, err := f.ss.Sync(ctx, slidingsync.Request{User: f.user, Device: "DEV", Body: window(0, 19)})
				ds = append(ds, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if len(resp.Rooms) != 20 {
					b.Fatalf("first window has %d rooms, want 20", len(resp.Rooms))
				}
				raw, _ := json.Marshal(resp)
				size = len(raw)
			}
			percentiles(b, ds)
			b.ReportMetric(float64(size), "resp-bytes")
		})

		pre, err := f.ss.Sync(ctx, slidingsync.Request{User: f.user, Device: "WOKEN", Body: window(0, 19)})
		if err != nil {
			b.Fatal(err)
		}
		// A message in the oldest room moves it into the window.
		first := pre.Pos
		content := json.RawMessage(`{"msgtype":"m.text","body":"the news"}`)
		if _, err := f.rooms.Send(ctx, pdu.Proto{RoomID: f.last, Type: "m.room.message", Sender: f.user, Content: content}, nil); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("rooms=%d/woken", rooms), func(b *testing.B) {
			b.ReportAllocs()
			defer storagetest.ReportCPU(b)()
			var ds []time.Duration
			size := 0
			for b.Loop() {
				start := time.Now()
				resp, err := f.ss.Sync(ctx, slidingsync.Request{User: f.user, Device: "WOKEN", Pos: first, Body: window(0, 19)})
				ds = append(ds, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if len(resp.Rooms) != 1 {
					b.Fatalf("woken response has %d rooms, want 1", len(resp.Rooms))
				}
				raw, _ := json.Marshal(resp)
				size = len(raw)
			}
			percentiles(b, ds)
			b.ReportMetric(float64(size), "resp-bytes")
		})

		b.Run(fmt.Sprintf("rooms=%d/conn-memory", rooms), func(b *testing.B) {
			const conns = 200
			for i := 0; b.Loop(); i++ {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for c := range conns {
					if _, err := f.ss.Sync(ctx, slidingsync.Request{User: f.user, Device: id.DeviceID(fmt.Sprintf("MEM%d_%d", i, c)), Body: window(0, 19)}); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/conns, "bytes/conn")
			}
		})

		b.Run(fmt.Sprintf("rooms=%d/sync-initial", rooms), func(b *testing.B) {
			b.ReportAllocs()
			defer storagetest.ReportCPU(b)()
			var ds []time.Duration
			size := 0
			for b.Loop() {
				start := time.Now()
				resp, err := f.sync.Sync(ctx, clientsync.Request{User: f.user, Device: "DEV"})
				ds = append(ds, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				raw, _ := json.Marshal(resp)
				size = len(raw)
			}
			percentiles(b, ds)
			b.ReportMetric(float64(size), "resp-bytes")
		})
	})
}
