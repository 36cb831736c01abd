package push_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

const alice = id.UserID("@alice:example.org")

func message(t *testing.T, body string) *push.Event {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"type": "m.room.message", "sender": "@bob:example.org", "room_id": "!r:example.org",
		"content": map[string]any{"msgtype": "m.text", "body": body}})
	ev, err := push.NewEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestCompiledFollowsChanges checks that the compiled cache is replaced
// when a change commits, and that every change rewrites m.push_rules.
func TestCompiledFollowsChanges(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ad := accountdata.New(db, notifier.New())
		s := push.New(db, ad)
		group := push.RoomContext{MemberCount: 3}
		evaluate := func(body string) push.Result {
			t.Helper()
			c, err := s.Compiled(ctx, alice)
			if err != nil {
				t.Fatal(err)
			}
			return c.Evaluate(message(t, body), group, "")
		}
		if r := evaluate("hi"); r.RuleID != ".m.rule.message" {
			t.Fatalf("before any change: %+v", r)
		}
		if err := s.SetRule(ctx, alice, push.Content, "tea", push.RuleReq{Pattern: ptr("tea"),
			Actions: []json.RawMessage{json.RawMessage(`"notify"`), json.RawMessage(`{"set_tweak":"highlight"}`)}}, "", ""); err != nil {
			t.Fatal(err)
		}
		if r := evaluate("tea time"); r.RuleID != "tea" || !r.Highlight {
			t.Fatalf("after adding a rule: %+v", r)
		}
		if err := s.SetEnabled(ctx, alice, push.Override, ".m.rule.master", true); err != nil {
			t.Fatal(err)
		}
		if r := evaluate("tea time"); r.RuleID != ".m.rule.master" || r.Notify {
			t.Fatalf("after enabling master: %+v", r)
		}
		content, err := ad.Get(ctx, alice, "", push.AccountDataType)
		if err != nil {
			t.Fatal(err)
		}
		var stored struct{ Global push.Ruleset }
		if err := json.Unmarshal(content, &stored); err != nil || !stored.Global.Override[0].Enabled || stored.Global.Content[0].RuleID != "tea" {
			t.Fatalf("m.push_rules = %s, %v", content, err)
		}
		// Errors leave rules and cache alone.
		if err := s.DeleteRule(ctx, alice, push.Content, "nope"); !errors.Is(err, mxerr.NotFound) {
			t.Fatalf("deleting an unknown rule: %v", err)
		}
		if err := s.SetActions(ctx, alice, push.Content, "tea", []json.RawMessage{json.RawMessage(`"bogus"`)}); !errors.Is(err, mxerr.InvalidParam) {
			t.Fatalf("bad actions: %v", err)
		}
	})
}

// TestConcurrentChanges checks that concurrent read-modify-writes of one
// user's rules lose none of them.
func TestConcurrentChanges(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := push.New(db, accountdata.New(db, notifier.New()))
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.SetRule(ctx, alice, push.Room, "!r"+string(rune('a'+i))+":x", push.RuleReq{Actions: []json.RawMessage{}}, "", "")
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		rs, err := s.Rules(ctx, alice)
		if err != nil || len(rs.Room) != 20 {
			t.Fatalf("%d room rules, %v; want 20", len(rs.Room), err)
		}
	})
}

func ptr[T any](v T) *T { return &v }
