package push_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// TestCopyRoomRules: the rules about a room (its room rule, and override
// or underride rules matching its ID exactly) are copied for the new room
// once, with their state; rules about other rooms, patterns and content
// rules are not.
func TestCopyRoomRules(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := push.New(db, accountdata.New(db, notifier.New()))
		notify := []json.RawMessage{json.RawMessage(`"notify"`)}
		cond := func(key, pattern string) json.RawMessage {
			b, _ := json.Marshal(map[string]string{"kind": "event_match", "key": key, "pattern": pattern})
			return b
		}
		set := func(kind push.Kind, id string, req push.RuleReq) {
			t.Helper()
			if err := s.SetRule(ctx, alice, kind, id, req, "", ""); err != nil {
				t.Fatal(err)
			}
		}
		set(push.Room, "!old:x", push.RuleReq{Actions: notify})
		set(push.Underride, "u-!old:x", push.RuleReq{Actions: notify, Conditions: []json.RawMessage{cond("type", "m.room.message"), cond("room_id", "!old:x")}})
		set(push.Override, "other", push.RuleReq{Actions: notify, Conditions: []json.RawMessage{cond("room_id", "!other:x")}})
		set(push.Override, "glob", push.RuleReq{Actions: notify, Conditions: []json.RawMessage{cond("room_id", "!old:*")}})
		set(push.Content, "!old:x", push.RuleReq{Actions: notify, Pattern: ptr("tea")})
		if err := s.SetEnabled(ctx, alice, push.Underride, "u-!old:x", false); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second copy changes nothing
			if err := s.CopyRoomRules(ctx, alice, "!old:x", "!new:x"); err != nil {
				t.Fatal(err)
			}
		}
		rs, err := s.Rules(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rs.Find(push.Room, "!new:x"); !ok {
			t.Error("the room rule was not copied")
		}
		u, ok := rs.Find(push.Underride, "u-!new:x")
		if !ok || u.Enabled || len(u.Conditions) != 2 || string(u.Conditions[0]) != string(cond("type", "m.room.message")) ||
			string(u.Conditions[1]) != string(cond("room_id", "!new:x")) {
			t.Errorf("underride copy = %+v (found %v), want disabled with room_id !new:x", u, ok)
		}
		count := func(k push.Kind) (n int) {
			for _, r := range rs.Of(k) {
				if !r.Default {
					n++
				}
			}
			return n
		}
		if o, c, r, un := count(push.Override), count(push.Content), count(push.Room), count(push.Underride); o != 2 || c != 1 || r != 2 || un != 2 {
			t.Errorf("user rules: %d override, %d content, %d room, %d underride; want 2, 1, 2, 2", o, c, r, un)
		}
	})
}
