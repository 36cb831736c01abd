package homeserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestIgnoredUsersEverywhere: once alice ignores bob, none of bob's
// non-state events, invites, typing, receipts, to-device messages or
// presence reach her, on any path; carol's do.
func TestIgnoredUsersEverywhere(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		roomID := publicRoom(t, alice, "", bob, carol)
		if err := alice.SetAccountData(ctx, "m.ignored_user_list", map[string]any{
			"ignored_users": map[id.UserID]any{bob.UserID: map[string]any{}}}); err != nil {
			t.Fatal(err)
		}
		first, err := alice.SyncRequest(ctx, 0, "", "", false, event.PresenceOffline)
		if err != nil {
			t.Fatal(err)
		}
		since := first.NextBatch

		send := func(c *mautrix.Client, body string) id.EventID {
			t.Helper()
			resp, err := c.SendText(ctx, roomID, body)
			if err != nil {
				t.Fatal(err)
			}
			return resp.EventID
		}
		send(bob, "bob 1")
		carolMsg := send(carol, "carol 1")
		bobMsg := send(bob, "bob 2")
		if _, err := bob.SendStateEvent(ctx, roomID, event.StateMember, bob.UserID.String(),
			map[string]any{"membership": "join", "displayname": "Bobby"}); err != nil {
			t.Fatal(err)
		}
		send(carol, "carol 2")
		bodies := func(evs []*event.Event) []string {
			var out []string
			for _, ev := range evs {
				if b, ok := ev.Content.Raw["body"].(string); ok {
					out = append(out, b)
				}
			}
			return out
		}
		hasTopic := func(evs []*event.Event) bool {
			for _, ev := range evs {
				if ev.Type == event.StateMember && ev.Sender == bob.UserID && ev.Content.Raw["displayname"] == "Bobby" {
					return true
				}
			}
			return false
		}
		checkTimeline := func(what string, evs []*event.Event) {
			t.Helper()
			got := bodies(evs)
			slices.Sort(got)
			if !slices.Equal(got, []string{"carol 1", "carol 2"}) {
				t.Errorf("%s: messages %q, want carol's only", what, got)
			}
			if !hasTopic(evs) {
				t.Errorf("%s: bob's state event is missing", what)
			}
		}

		t.Run("sync", func(t *testing.T) {
			resp, err := alice.SyncRequest(ctx, 0, since, "", false, event.PresenceOffline)
			if err != nil {
				t.Fatal(err)
			}
			checkTimeline("/sync", resp.Rooms.Join[roomID].Timeline.Events)
		})
		t.Run("messages", func(t *testing.T) {
			resp, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 100)
			if err != nil {
				t.Fatal(err)
			}
			checkTimeline("/messages", resp.Chunk)
		})
		t.Run("context", func(t *testing.T) {
			resp, err := alice.Context(ctx, roomID, carolMsg, nil, 20)
			if err != nil {
				t.Fatal(err)
			}
			checkTimeline("/context", append(append(resp.EventsBefore, resp.Event), resp.EventsAfter...))
			if _, err := alice.Context(ctx, roomID, bobMsg, nil, 20); httpStatus(err) != http.StatusNotFound {
				t.Errorf("/context of an ignored user's message: %v, want 404", err)
			}
		})
		t.Run("events", func(t *testing.T) {
			var resp struct {
				Chunk []*event.Event `json:"chunk"`
			}
			u := alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "events"}, map[string]string{"from": since, "timeout": "0"})
			if _, err := alice.MakeRequest(ctx, http.MethodGet, u, nil, &resp); err != nil {
				t.Fatal(err)
			}
			checkTimeline("/events", resp.Chunk)
			_, err := alice.MakeRequest(ctx, http.MethodGet, alice.BuildClientURL("v3", "events", bobMsg), nil, nil)
			if httpStatus(err) != http.StatusNotFound {
				t.Errorf("/events/{eventId} of an ignored user's message: %v, want 404", err)
			}
		})
		t.Run("initialSync", func(t *testing.T) {
			var resp struct {
				Rooms []struct {
					RoomID   id.RoomID `json:"room_id"`
					Messages struct {
						Chunk []*event.Event `json:"chunk"`
					} `json:"messages"`
					State []*event.Event `json:"state"`
				} `json:"rooms"`
			}
			u := alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "initialSync"}, map[string]string{"limit": "100"})
			if _, err := alice.MakeRequest(ctx, http.MethodGet, u, nil, &resp); err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.Rooms {
				if r.RoomID == roomID {
					got := bodies(r.Messages.Chunk)
					if slices.Contains(got, "bob 1") || slices.Contains(got, "bob 2") || !slices.Contains(got, "carol 2") {
						t.Errorf("/initialSync messages %q, want carol's only", got)
					}
				}
			}
			var room struct {
				Messages struct {
					Chunk []*event.Event `json:"chunk"`
				} `json:"messages"`
			}
			if _, err := alice.MakeRequest(ctx, http.MethodGet, alice.BuildClientURL("v3", "rooms", roomID, "initialSync"), nil, &room); err != nil {
				t.Fatal(err)
			}
			if got := bodies(room.Messages.Chunk); slices.Contains(got, "bob 2") {
				t.Errorf("/rooms/{roomId}/initialSync messages %q, want carol's only", got)
			}
		})

		t.Run("invites", func(t *testing.T) {
			invite := func(c *mautrix.Client) id.RoomID {
				created, err := c.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{alice.UserID}})
				if err != nil {
					t.Fatal(err)
				}
				return created.RoomID
			}
			fromBob, fromCarol := invite(bob), invite(carol)
			resp, err := alice.SyncRequest(ctx, 0, since, "", false, event.PresenceOffline)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := resp.Rooms.Invite[fromBob]; ok {
				t.Error("/sync shows an ignored user's invite")
			}
			if _, ok := resp.Rooms.Invite[fromCarol]; !ok {
				t.Error("/sync lacks carol's invite")
			}
			var initial struct {
				Rooms []struct {
					RoomID id.RoomID `json:"room_id"`
				} `json:"rooms"`
			}
			if _, err := alice.MakeRequest(ctx, http.MethodGet, alice.BuildClientURL("v3", "initialSync"), nil, &initial); err != nil {
				t.Fatal(err)
			}
			var listed []id.RoomID
			for _, r := range initial.Rooms {
				listed = append(listed, r.RoomID)
			}
			if slices.Contains(listed, fromBob) || !slices.Contains(listed, fromCarol) {
				t.Errorf("/initialSync lists %v: want carol's invite %s, not bob's %s", listed, fromCarol, fromBob)
			}
			var stream struct {
				Chunk []*event.Event `json:"chunk"`
			}
			u := alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "events"}, map[string]string{"from": since, "timeout": "0"})
			if _, err := alice.MakeRequest(ctx, http.MethodGet, u, nil, &stream); err != nil {
				t.Fatal(err)
			}
			for _, ev := range stream.Chunk {
				if ev.Type == event.StateMember && ev.Sender == bob.UserID && ev.GetStateKey() == alice.UserID.String() {
					t.Error("/events shows an ignored user's invite")
				}
			}
		})

		t.Run("ephemeral", func(t *testing.T) {
			for _, c := range []*mautrix.Client{bob, carol} {
				if _, err := c.UserTyping(ctx, roomID, true, 30*time.Second); err != nil {
					t.Fatal(err)
				}
				if err := c.SendReceipt(ctx, roomID, carolMsg, event.ReceiptTypeRead, nil); err != nil {
					t.Fatal(err)
				}
				if err := c.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline}); err != nil {
					t.Fatal(err)
				}
				_, err := c.SendToDevice(ctx, event.NewEventType("org.example.ping"), &mautrix.ReqSendToDevice{
					Messages: map[id.UserID]map[id.DeviceID]*event.Content{alice.UserID: {alice.DeviceID: {
						Raw: map[string]any{"from": c.UserID.String()}}}}})
				if err != nil {
					t.Fatal(err)
				}
			}
			// One sync from the same token gathers all of it; wait for
			// carol's four, then bob's must be absent.
			var resp mautrix.RespSync
			waitFor(t, "carol's typing, receipt, presence and to-device message", func() (bool, error) {
				u := alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"},
					map[string]string{"since": since, "timeout": "0", "set_presence": "offline"})
				var raw json.RawMessage
				if _, err := alice.MakeRequest(ctx, http.MethodGet, u, nil, &raw); err != nil {
					return false, err
				}
				resp = mautrix.RespSync{}
				if err := json.Unmarshal(raw, &resp); err != nil {
					return false, err
				}
				typing, receipt, toDevice := false, false, false
				for _, ev := range resp.Rooms.Join[roomID].Ephemeral.Events {
					has := strings.Contains(string(ev.Content.VeryRaw), carol.UserID.String())
					typing = typing || (ev.Type == event.EphemeralEventTyping && has)
					receipt = receipt || (ev.Type == event.EphemeralEventReceipt && has)
				}
				for _, ev := range resp.ToDevice.Events {
					toDevice = toDevice || ev.Sender == carol.UserID
				}
				presence := presenceOf(&resp)[carol.UserID].presence == "online"
				return typing && receipt && toDevice && presence, fmt.Errorf("typing %v receipt %v to-device %v presence %v",
					typing, receipt, toDevice, presence)
			})
			for _, ev := range resp.Rooms.Join[roomID].Ephemeral.Events {
				switch ev.Type {
				case event.EphemeralEventTyping:
					if strings.Contains(string(ev.Content.VeryRaw), bob.UserID.String()) {
						t.Errorf("typing shows an ignored user: %s", ev.Content.VeryRaw)
					}
				case event.EphemeralEventReceipt:
					if strings.Contains(string(ev.Content.VeryRaw), bob.UserID.String()) {
						t.Errorf("receipts show an ignored user's: %s", ev.Content.VeryRaw)
					}
				}
			}
			if p := presenceOf(&resp); p[bob.UserID].presence != "" || p[carol.UserID].presence != "online" {
				t.Errorf("presence %+v: want carol's, not bob's", p)
			}
			for _, ev := range resp.ToDevice.Events {
				if ev.Sender == bob.UserID {
					t.Errorf("to-device message from an ignored user: %+v", ev)
				}
			}
		})
	})
}
