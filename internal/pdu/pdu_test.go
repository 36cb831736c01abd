package pdu

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

var allVersions = []id.RoomVersion{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}

// signer is a test server with a fixed key.
type signer struct {
	name  string
	keyID id.KeyID
	priv  ed25519.PrivateKey
}

func newSigner(name string, seed byte) signer {
	return signer{name: name, keyID: "ed25519:1", priv: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))}
}

var (
	serverA = newSigner("a.test", 1)
	serverB = newSigner("b.test", 2)
)

// keysOf returns a GetKeyFunc knowing the keys of the given servers.
func keysOf(servers ...signer) mpdu.GetKeyFunc {
	return func(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
		for _, s := range servers {
			if s.name == server && s.keyID == keyID {
				pub := s.priv.Public().(ed25519.PublicKey)
				return id.SigningKey(base64.RawStdEncoding.EncodeToString(pub)), time.Now().Add(time.Hour), nil
			}
		}
		return "", time.Time{}, nil
	}
}

// room is a small signed room built with Build: create, creator's join,
// and whatever the test adds.
type room struct {
	t      testing.TB
	v      id.RoomVersion
	id     id.RoomID
	events map[id.EventID]*Event
	last   []id.EventID
	create id.EventID
	depth  int64
}

func newRoom(t testing.TB, v id.RoomVersion) *room {
	t.Helper()
	r := &room{t: t, v: v, events: map[id.EventID]*Event{}}
	if !v.RoomIDIsCreateEventID() {
		r.id = "!room:a.test"
	}
	content := `{"room_version":"` + string(v) + `"`
	if v.CreatorInContent() {
		content += `,"creator":"@alice:a.test"`
	}
	create := r.add(serverA, "m.room.create", ptr(""), "@alice:a.test", content+"}", nil)
	r.create = create.ID
	if r.id == "" {
		r.id = create.RoomID()
	}
	r.add(serverA, "m.room.member", ptr("@alice:a.test"), "@alice:a.test", `{"membership":"join"}`, []id.EventID{create.ID})
	return r
}

func ptr(s string) *string { return &s }

// add builds an event on top of the room's last event.
func (r *room) add(s signer, typ string, stateKey *string, sender id.UserID, content string, auth []id.EventID) *Event {
	r.t.Helper()
	roomID := r.id
	if typ == "m.room.create" && r.v.RoomIDIsCreateEventID() {
		roomID = ""
	}
	r.depth++
	ev, err := Build(Proto{Type: typ, StateKey: stateKey, Sender: sender, Content: json.RawMessage(content), RoomID: roomID}, BuildArgs{
		Version: r.v, AuthEvents: auth, PrevEvents: r.last, Depth: r.depth, Timestamp: 1_700_000_000_000 + r.depth,
		ServerName: s.name, KeyID: s.keyID, Key: s.priv,
		Referenced: func(evID id.EventID) (*Event, error) {
			if ev, ok := r.events[evID]; ok {
				return ev, nil
			}
			return nil, errors.New("unknown event")
		},
	})
	if err != nil {
		r.t.Fatalf("building %s: %v", typ, err)
	}
	r.events[ev.ID] = ev
	r.last = []id.EventID{ev.ID}
	return ev
}

func (r *room) message(body string) *Event {
	r.t.Helper()
	return r.add(serverA, "m.room.message", nil, "@alice:a.test", `{"msgtype":"m.text","body":"`+body+`"}`, []id.EventID{r.create})
}

func TestBuildParseRoundTrip(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			r := newRoom(t, v)
			msg := r.message("hello")
			raw := msg.JSON()

			parsed, err := Parse(v, raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if parsed.ID != msg.ID {
				t.Fatalf("parsed ID %s, built %s", parsed.ID, msg.ID)
			}
			if !bytes.Equal(parsed.JSON(), raw) {
				t.Fatalf("JSON changed in a round trip:\n%s\n%s", parsed.JSON(), raw)
			}
			if again := jsonRemarshal(parsed); !bytes.Equal(again, raw) {
				t.Fatalf("re-marshalled form differs:\n%s\n%s", again, raw)
			}
			if len(parsed.AuthEvents) != 1 || parsed.AuthEvents[0] != r.create || len(parsed.PrevEvents) != 1 {
				t.Fatalf("auth %v prev %v", parsed.AuthEvents, parsed.PrevEvents)
			}
			trusted, err := ParseTrusted(v, msg.ID, raw)
			if err != nil || trusted.ID != msg.ID || trusted.Content == nil {
				t.Fatalf("ParseTrusted: %v %v", trusted, err)
			}
			incoming, err := ParseIncoming(v, raw)
			if err != nil {
				t.Fatalf("ParseIncoming: %v", err)
			}
			if !incoming.VerifyContentHash() {
				t.Fatal("content hash does not verify")
			}
			if err := incoming.VerifySignatures(keysOf(serverA)); err != nil {
				t.Fatalf("VerifySignatures: %v", err)
			}
			ce, err := incoming.ToClientEvent(v)
			if err != nil || ce.ID != msg.ID || ce.RoomID != r.id {
				t.Fatalf("ToClientEvent: %v %v", ce, err)
			}
			checkIDForm(t, r, msg, raw)
		})
	}
}

// jsonRemarshal marshals the event's wire form afresh, ignoring the cached
// raw bytes.
func jsonRemarshal(e *Event) []byte {
	c := *e
	c.raw = nil
	return c.JSON()
}

// checkIDForm checks the event ID and reference form of each version.
func checkIDForm(t *testing.T, r *room, ev *Event, raw []byte) {
	t.Helper()
	v := r.v
	ref, err := ev.ReferenceHash()
	if err != nil {
		t.Fatal(err)
	}
	switch v {
	case "1", "2":
		if !strings.HasPrefix(ev.ID.String(), "$") || !strings.HasSuffix(ev.ID.String(), ":a.test") {
			t.Fatalf("v%s event ID %s is not $opaque:a.test", v, ev.ID)
		}
		if got := gjson.GetBytes(raw, "event_id").Str; got != ev.ID.String() {
			t.Fatalf("event_id in JSON = %q, want %s", got, ev.ID)
		}
		// prev_events: [[id, {"sha256": reference hash of that event}]]
		prev := gjson.GetBytes(raw, "prev_events.0")
		if !prev.IsArray() || len(prev.Array()) != 2 {
			t.Fatalf("prev_events[0] = %s, want a pair", prev.Raw)
		}
		prevID := id.EventID(prev.Array()[0].Str)
		prevEv, ok := r.events[prevID]
		if !ok {
			t.Fatalf("prev event %s unknown", prevID)
		}
		want, err := prevEv.ReferenceHash()
		if err != nil {
			t.Fatal(err)
		}
		if got := prev.Array()[1].Get("sha256").Str; got != base64.RawStdEncoding.EncodeToString(want[:]) {
			t.Fatalf("prev_events hash = %s, want reference hash %x", got, want)
		}
		if gjson.GetBytes(raw, "auth_events.0.0").Str == "" {
			t.Fatalf("auth_events not in pair form: %s", gjson.GetBytes(raw, "auth_events").Raw)
		}
	case "3":
		if ev.ID.String() != "$"+base64.RawStdEncoding.EncodeToString(ref[:]) {
			t.Fatalf("v3 event ID %s is not the base64 reference hash", ev.ID)
		}
	default:
		if ev.ID.String() != "$"+base64.RawURLEncoding.EncodeToString(ref[:]) {
			t.Fatalf("v%s event ID %s is not the URL-safe base64 reference hash", v, ev.ID)
		}
		if gjson.GetBytes(raw, "event_id").Exists() {
			t.Fatalf("v%s event carries event_id", v)
		}
	}
}
