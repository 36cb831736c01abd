package homeserver_test

import (
	"context"
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestRedactionBeforeItsTarget: a redaction that arrives over federation
// before the event it redacts (here, on a fork) is kept, and the event
// is stored and served redacted when it arrives, never with its content.
func TestRedactionBeforeItsTarget(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		r := startEvilRoom(t, engine)
		victim, alice, roomID, evil, join, auth := r.victim, r.alice, r.roomID, r.evil, r.join, r.msgAuth
		secret := evil.build(t, roomID, join, auth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "the secret"})
		redaction := evil.build(t, roomID, join, auth, "m.room.redaction", nil, map[string]any{"redacts": secret.ID})
		if errText := evil.send(t, victim, redaction.JSON()); errText != "" {
			t.Fatalf("the redaction was refused: %s", errText)
		}
		if errText := evil.send(t, victim, secret.JSON()); errText != "" {
			t.Fatalf("the redacted event was refused: %s", errText)
		}
		var got struct {
			Content  map[string]any `json:"content"`
			Unsigned struct {
				RedactedBecause json.RawMessage `json:"redacted_because"`
			} `json:"unsigned"`
		}
		if _, err := alice.MakeRequest(ctx, "GET", alice.BuildClientURL("v3", "rooms", roomID, "event", secret.ID), nil, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Content) != 0 || got.Unsigned.RedactedBecause == nil {
			t.Errorf("the event a redaction arrived before: content %v, redacted_because %s", got.Content, got.Unsigned.RedactedBecause)
		}
		msgs, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 20)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range msgs.Chunk {
			if ev.ID == secret.ID && len(ev.Content.Raw) != 0 {
				t.Errorf("/messages serves the redacted event's content: %v", ev.Content.Raw)
			}
		}
	})
}
