package accountdata_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

const (
	alice = id.UserID("@alice:x")
	bob   = id.UserID("@bob:x")
	room  = id.RoomID("!r:x")
)

func TestPutGetSince(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := accountdata.New(db, notifier.New())
		put := func(user id.UserID, roomID id.RoomID, typ, content string) int64 {
			t.Helper()
			pos, err := s.Put(ctx, user, roomID, typ, json.RawMessage(content))
			if err != nil {
				t.Fatalf("Put(%s, %q, %s): %v", user, roomID, typ, err)
			}
			return pos
		}
		p1 := put(alice, "", "m.direct", `{"a":1}`)
		p2 := put(alice, room, "m.tag", `{"tags":{}}`)
		p3 := put(bob, "", "m.direct", `{"b":1}`)
		p4 := put(alice, "", "m.direct", `{"a":2}`) // replaces p1
		if !(p1 < p2 && p2 < p3 && p3 < p4) {
			t.Fatalf("positions not increasing: %d %d %d %d", p1, p2, p3, p4)
		}
		now, err := db.CurrentID(ctx, "stream")
		if err != nil || now != p4 {
			t.Fatalf("stream position = %d, %v; want %d (account data shares the event stream)", now, err, p4)
		}

		tests := []struct {
			name        string
			user        id.UserID
			after, upto int64
			want        []accountdata.Entry
		}{
			{"all of alice", alice, 0, p4, []accountdata.Entry{
				{RoomID: room, Type: "m.tag", Content: json.RawMessage(`{"tags":{}}`), StreamPos: p2},
				{RoomID: "", Type: "m.direct", Content: json.RawMessage(`{"a":2}`), StreamPos: p4},
			}},
			{"after the room tag", alice, p2, p4, []accountdata.Entry{
				{RoomID: "", Type: "m.direct", Content: json.RawMessage(`{"a":2}`), StreamPos: p4},
			}},
			{"upto excludes newer", alice, 0, p3, []accountdata.Entry{
				{RoomID: room, Type: "m.tag", Content: json.RawMessage(`{"tags":{}}`), StreamPos: p2},
			}},
			{"nothing new", alice, p4, p4, nil},
			{"other user", bob, 0, p4, []accountdata.Entry{
				{RoomID: "", Type: "m.direct", Content: json.RawMessage(`{"b":1}`), StreamPos: p3},
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.Since(ctx, tt.user, tt.after, tt.upto)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Since(%s, %d, %d):\n got %s\nwant %s", tt.user, tt.after, tt.upto, show(got), show(tt.want))
				}
			})
		}

		got, err := s.Get(ctx, alice, "", "m.direct")
		if err != nil || string(got) != `{"a":2}` {
			t.Errorf("Get global = %s, %v; want {\"a\":2}", got, err)
		}
		got, err = s.Get(ctx, alice, room, "m.tag")
		if err != nil || string(got) != `{"tags":{}}` {
			t.Errorf("Get room = %s, %v", got, err)
		}
		// Room and global data are separate: no fallback either way.
		if _, err := s.Get(ctx, alice, room, "m.direct"); !errors.Is(err, mxerr.NotFound) {
			t.Errorf("Get room m.direct: err = %v, want M_NOT_FOUND", err)
		}
		if _, err := s.Get(ctx, alice, "", "m.tag"); !errors.Is(err, mxerr.NotFound) {
			t.Errorf("Get global m.tag: err = %v, want M_NOT_FOUND", err)
		}
	})
}

func TestPutWakesOnlyTheUser(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		n := notifier.New()
		s := accountdata.New(db, n)
		aliceGen, bobGen := n.Generation(alice), n.Generation(bob)
		if _, err := s.Put(ctx, alice, "", "m.direct", json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if !n.Wait(wctx, alice, aliceGen) {
			t.Fatal("alice was not woken by her account data change")
		}
		if n.Generation(bob) != bobGen {
			t.Fatal("bob was woken by alice's account data")
		}
	})
}

func show(es []accountdata.Entry) string {
	b, _ := json.Marshal(es)
	return string(b)
}

func TestDefaultsUntilWritten(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := accountdata.New(db, notifier.New(), accountdata.WithDefault("m.push_rules", func(u id.UserID) json.RawMessage {
			return json.RawMessage(`{"for":"` + u.String() + `"}`)
		}))
		types := func(after, upto int64) map[string]string {
			t.Helper()
			entries, err := s.Since(ctx, alice, after, upto)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, e := range entries {
				out[e.Type] = string(e.Content)
			}
			return out
		}
		if got := types(0, 100); got["m.push_rules"] != `{"for":"@alice:x"}` {
			t.Fatalf("full listing = %v, want the default", got)
		}
		if got := types(1, 100); len(got) != 0 {
			t.Fatalf("incremental listing = %v, want no default", got)
		}
		if c, err := s.Get(ctx, alice, "", "m.push_rules"); err != nil || string(c) != `{"for":"@alice:x"}` {
			t.Fatalf("Get = %s, %v", c, err)
		}
		if _, err := s.Get(ctx, alice, room, "m.push_rules"); !errors.Is(err, mxerr.NotFound) {
			t.Fatalf("room Get = %v, want M_NOT_FOUND", err)
		}
		pos, err := s.Put(ctx, alice, "", "m.push_rules", json.RawMessage(`{"mine":1}`))
		if err != nil {
			t.Fatal(err)
		}
		// Once written, the row replaces the default, even in a listing
		// whose window ends before it.
		if got := types(0, pos); got["m.push_rules"] != `{"mine":1}` {
			t.Fatalf("after write = %v", got)
		}
		if got := types(0, pos-1); len(got) != 0 {
			t.Fatalf("window before the write = %v, want nothing", got)
		}
	})
}

// TestUpdateConcurrent: concurrent read-modify-write updates of one item
// (tags added at once from two devices) lose none of the changes, and a
// failing change writes nothing.
func TestUpdateConcurrent(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := accountdata.New(db, notifier.New())
		const n = 20
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := s.Update(ctx, alice, room, "m.tag", func(old json.RawMessage) (json.RawMessage, error) {
					m := map[string]int{}
					if old != nil {
						if err := json.Unmarshal(old, &m); err != nil {
							return nil, err
						}
					}
					m[string(rune('a'+i))] = i
					return json.Marshal(m)
				})
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		raw, err := s.Get(ctx, alice, room, "m.tag")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]int
		if err := json.Unmarshal(raw, &m); err != nil || len(m) != n {
			t.Fatalf("after %d concurrent updates: %s, %v", n, raw, err)
		}
		boom := errors.New("boom")
		if _, err := s.Update(ctx, alice, room, "m.tag", func(json.RawMessage) (json.RawMessage, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("failing change: %v, want boom", err)
		}
		if again, _ := s.Get(ctx, alice, room, "m.tag"); string(again) != string(raw) {
			t.Fatalf("a failed change wrote %s", again)
		}
	})
}
