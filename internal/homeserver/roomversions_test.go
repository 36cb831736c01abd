package homeserver_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// checkEventIDFormat fails unless evID has the format of room version v:
// $opaque:server for 1 and 2, the standard base64 reference hash for 3 and
// the URL-safe one from 4 on.
func checkEventIDFormat(t *testing.T, v id.RoomVersion, evID id.EventID) {
	t.Helper()
	s := strings.TrimPrefix(evID.String(), "$")
	switch v.EventIDFormat() {
	case id.EventIDFormatCustom:
		if opaque, server, ok := strings.Cut(s, ":"); !ok || opaque == "" || server != "localhost" {
			t.Fatalf("v%s event ID %s is not $opaque:localhost", v, evID)
		}
	case id.EventIDFormatBase64:
		if b, err := base64.RawStdEncoding.DecodeString(s); err != nil || len(b) != 32 {
			t.Fatalf("v%s event ID %s is not a base64 hash: %v", v, evID, err)
		}
	default:
		if b, err := base64.RawURLEncoding.DecodeString(s); err != nil || len(b) != 32 {
			t.Fatalf("v%s event ID %s is not a URL-safe base64 hash: %v", v, evID, err)
		}
	}
}

func TestEveryRoomVersion(t *testing.T) {
	versions := []id.RoomVersion{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)

		caps, err := srv.Client("caps").Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range versions {
			if caps.RoomVersions == nil || caps.RoomVersions.Available[string(v)] != mautrix.CapRoomVersionStable {
				t.Fatalf("capabilities do not list room version %s as stable: %+v", v, caps.RoomVersions)
			}
		}

		for _, v := range versions {
			t.Run("v"+string(v), func(t *testing.T) {
				t.Parallel()
				exerciseRoomVersion(ctx, t, srv, v)
			})
		}
	})
}

// exerciseRoomVersion creates a room of version v, joins a second user,
// sends messages, changes the topic and power levels, redacts, and reads
// everything back through /sync and /messages.
func exerciseRoomVersion(ctx context.Context, t *testing.T, srv *mxtest.Server, v id.RoomVersion) {
	alice, bob := srv.Client("alice"), srv.Client("bob")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: v, Name: "v" + string(v)})
	if err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	roomID := created.RoomID
	var create map[string]any
	if err := alice.StateEvent(ctx, roomID, event.StateCreate, "", &create); err != nil {
		t.Fatal(err)
	}
	if create["room_version"] != string(v) {
		t.Fatalf("room_version = %v, want %s", create["room_version"], v)
	}
	if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatalf("join: %v", err)
	}
	start, err := bob.SyncRequest(ctx, 0, "", "", false, "")
	if err != nil {
		t.Fatalf("bob initial sync: %v", err)
	}

	var sent []id.EventID
	for i, cli := range []*mautrix.Client{alice, bob, alice} {
		resp, err := cli.SendText(ctx, roomID, "msg "+string(rune('a'+i)))
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		checkEventIDFormat(t, v, resp.EventID)
		sent = append(sent, resp.EventID)
	}
	if _, err := alice.SendStateEvent(ctx, roomID, event.StateTopic, "", &event.TopicEventContent{Topic: "topic v" + string(v)}); err != nil {
		t.Fatalf("set topic: %v", err)
	}
	// Bob may not change the topic (state_default 50) until alice raises him.
	_, err = bob.SendStateEvent(ctx, roomID, event.StateTopic, "", &event.TopicEventContent{Topic: "bob's"})
	mustErrcode(t, err, "M_FORBIDDEN")
	var pl event.PowerLevelsEventContent
	if err := alice.StateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatal(err)
	}
	pl.SetUserLevel(bob.UserID, 50)
	if _, err := alice.SendStateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
		t.Fatalf("raise bob: %v", err)
	}
	if _, err := bob.SendStateEvent(ctx, roomID, event.StateTopic, "", &event.TopicEventContent{Topic: "bob's v" + string(v)}); err != nil {
		t.Fatalf("bob sets topic after being raised: %v", err)
	}
	// Alice (100) redacts bob's message.
	red, err := alice.RedactEvent(ctx, roomID, sent[1])
	if err != nil {
		t.Fatalf("redact: %v", err)
	}

	// /sync: bob sees the messages in order, the redacted one empty, and the
	// new topic in state.
	got := map[id.EventID]*event.Event{}
	var order []id.EventID
	since := start.NextBatch
	for len(got) < 7 {
		resp, err := bob.SyncRequest(ctx, 5000, since, `{"room":{"timeline":{"limit":100}}}`, false, "")
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		if since == resp.NextBatch {
			t.Fatalf("sync made no progress; have %d of 7 events", len(got))
		}
		since = resp.NextBatch
		for _, ev := range resp.Rooms.Join[roomID].Timeline.Events {
			if _, dup := got[ev.ID]; !dup {
				order = append(order, ev.ID)
			}
			got[ev.ID] = ev
		}
	}
	wantOrder := append(append([]id.EventID{}, sent...), red.EventID)
	var msgOrder []id.EventID
	for _, evID := range order {
		if t := got[evID].Type; t == event.EventMessage || t == event.EventRedaction {
			msgOrder = append(msgOrder, evID)
		}
	}
	if strings.Join(idStrings(msgOrder), ",") != strings.Join(idStrings(wantOrder), ",") {
		t.Fatalf("sync timeline order = %v, want %v", msgOrder, wantOrder)
	}
	if r := got[red.EventID]; r.Redacts != sent[1] {
		t.Fatalf("redaction redacts %q, want %s", r.Redacts, sent[1])
	}
	var topic event.TopicEventContent
	if err := bob.StateEvent(ctx, roomID, event.StateTopic, "", &topic); err != nil || topic.Topic != "bob's v"+string(v) {
		t.Fatalf("topic = %q, %v", topic.Topic, err)
	}

	// /messages backwards from now: same messages, newest first, the
	// redacted one without body and with redacted_because.
	msgs, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 100)
	if err != nil {
		t.Fatalf("messages: %v", err)
	}
	var bodies []string
	sawRedacted := false
	for _, ev := range msgs.Chunk {
		if ev.Type != event.EventMessage {
			continue
		}
		if ev.ID == sent[1] {
			sawRedacted = true
			if len(ev.Content.Raw) != 0 || ev.Unsigned.RedactedBecause == nil {
				t.Fatalf("redacted message via /messages: content %v, redacted_because %v", ev.Content.Raw, ev.Unsigned.RedactedBecause)
			}
			continue
		}
		bodies = append(bodies, ev.Content.Raw["body"].(string))
	}
	if !sawRedacted || strings.Join(bodies, ",") != "msg c,msg a" {
		t.Fatalf("/messages bodies = %v (redacted seen: %v)", bodies, sawRedacted)
	}
	// A state event from /messages reads back with the expected content too.
	sawPL := false
	for _, ev := range msgs.Chunk {
		if ev.Type == event.StatePowerLevels && ev.Sender == alice.UserID {
			if lvl, _ := ev.Content.Raw["users"].(map[string]any)[bob.UserID.String()].(float64); lvl == 50 {
				sawPL = true
			}
		}
	}
	if !sawPL {
		t.Fatal("/messages has no power levels event raising bob to 50")
	}
}

func idStrings(ids []id.EventID) []string {
	out := make([]string, len(ids))
	for i, x := range ids {
		out[i] = x.String()
	}
	return out
}
