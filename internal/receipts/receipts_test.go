package receipts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

const (
	alice = id.UserID("@alice:x")
	bob   = id.UserID("@bob:x")
	carol = id.UserID("@carol:x")
	room1 = id.RoomID("!one:x")
	room2 = id.RoomID("!two:x")
)

// members: alice and bob are in room1, carol in room2.
func members(ctx context.Context, roomID id.RoomID) ([]id.UserID, error) {
	if roomID == room1 {
		return []id.UserID{alice, bob}, nil
	}
	return []id.UserID{carol}, nil
}

// key identifies a receipt without its timestamp.
type key struct {
	Room     id.RoomID
	Type     string
	User     id.UserID
	Thread   string
	Event    id.EventID
	Position int64
}

func keys(m map[id.RoomID][]receipts.Receipt) []key {
	var out []key
	for _, r := range []id.RoomID{room1, room2} {
		for _, rc := range m[r] {
			out = append(out, key{rc.RoomID, rc.Type, rc.User, rc.ThreadID, rc.EventID, rc.StreamPos})
		}
	}
	return out
}

func TestPutAndSince(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := receipts.New(db, notifier.New(), members)
		put := func(roomID id.RoomID, typ string, user id.UserID, thread string, ev id.EventID) int64 {
			t.Helper()
			pos, err := s.Put(ctx, roomID, typ, user, thread, ev)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			return pos
		}
		before := time.Now().UnixMilli()
		put(room1, receipts.Read, alice, "", "$a1")
		p2 := put(room1, receipts.ReadPrivate, bob, "", "$b1")
		p3 := put(room1, receipts.Read, alice, "main", "$a2")
		p4 := put(room2, receipts.Read, carol, "", "$c1")
		p5 := put(room1, receipts.Read, alice, "", "$a3") // replaces p1
		if now, _ := db.CurrentID(ctx, "stream"); now != p5 {
			t.Fatalf("stream position %d, want %d: receipts share the event stream", now, p5)
		}
		both := []id.RoomID{room1, room2}
		tests := []struct {
			name        string
			rooms       []id.RoomID
			viewer      id.UserID
			after, upto int64
			want        []key
		}{
			{"alice sees public receipts, not bob's private one", both, alice, 0, p5, []key{
				{room1, receipts.Read, alice, "main", "$a2", p3},
				{room1, receipts.Read, alice, "", "$a3", p5},
				{room2, receipts.Read, carol, "", "$c1", p4},
			}},
			{"bob sees his private receipt", []id.RoomID{room1}, bob, 0, p5, []key{
				{room1, receipts.ReadPrivate, bob, "", "$b1", p2},
				{room1, receipts.Read, alice, "main", "$a2", p3},
				{room1, receipts.Read, alice, "", "$a3", p5},
			}},
			{"window (p3, p4]", both, bob, p3, p4, []key{
				{room2, receipts.Read, carol, "", "$c1", p4},
			}},
			{"only listed rooms", []id.RoomID{room2}, alice, 0, p5, []key{
				{room2, receipts.Read, carol, "", "$c1", p4},
			}},
			{"nothing new", both, alice, p5, p5, nil},
			{"no rooms", nil, alice, 0, p5, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.Since(ctx, tt.rooms, tt.viewer, tt.after, tt.upto)
				if err != nil {
					t.Fatal(err)
				}
				if g := keys(got); !reflect.DeepEqual(g, tt.want) {
					t.Errorf("Since:\n got %+v\nwant %+v", g, tt.want)
				}
			})
		}
		got, err := s.Since(ctx, []id.RoomID{room2}, alice, 0, p5)
		if err != nil {
			t.Fatal(err)
		}
		if ts := got[room2][0].TS; ts < before || ts > time.Now().UnixMilli() {
			t.Errorf("ts = %d, want the time of the Put", ts)
		}
	})
}

func TestSinceBatchesManyRooms(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := receipts.New(db, notifier.New(), members)
		var rooms []id.RoomID
		for i := range 1200 {
			rooms = append(rooms, id.RoomID(fmt.Sprintf("!r%d:x", i)))
		}
		for _, i := range []int{3, 700, 1199} {
			if _, err := s.Put(ctx, rooms[i], receipts.Read, alice, "", "$e"); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Since(ctx, rooms, bob, 0, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[rooms[3]] == nil || got[rooms[700]] == nil || got[rooms[1199]] == nil {
			t.Fatalf("got receipts for %d rooms (%v), want rooms 3, 700 and 1199", len(got), got)
		}
	})
}

func TestPutWakes(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		n := notifier.New()
		s := receipts.New(db, n, members)
		for _, tt := range []struct {
			typ  string
			want map[id.UserID]bool
		}{
			{receipts.Read, map[id.UserID]bool{alice: true, bob: true, carol: false}},
			{receipts.ReadPrivate, map[id.UserID]bool{alice: true, bob: false, carol: false}},
		} {
			gens := map[id.UserID]uint64{}
			for u := range tt.want {
				gens[u] = n.Generation(u)
			}
			if _, err := s.Put(ctx, room1, tt.typ, alice, "", "$e"); err != nil {
				t.Fatal(err)
			}
			for u, want := range tt.want {
				if woke := n.Generation(u) != gens[u]; woke != want {
					t.Errorf("%s receipt by alice: %s woken = %v, want %v", tt.typ, u, woke, want)
				}
			}
		}
	})
}

func TestEvent(t *testing.T) {
	raw := receipts.Event([]receipts.Receipt{
		{Type: receipts.Read, User: alice, EventID: "$e1", TS: 1},
		{Type: receipts.Read, User: bob, ThreadID: "main", EventID: "$e1", TS: 2},
		{Type: receipts.ReadPrivate, User: bob, EventID: "$e2", TS: 3},
	})
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	_ = json.Unmarshal([]byte(`{"type":"m.receipt","content":{
		"$e1":{"m.read":{"@alice:x":{"ts":1},"@bob:x":{"ts":2,"thread_id":"main"}}},
		"$e2":{"m.read.private":{"@bob:x":{"ts":3}}}}}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Event:\n got %s\nwant %v", raw, want)
	}
}
