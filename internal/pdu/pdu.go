// Package pdu is the event format of each room version: parsing stored or
// received PDUs, building and signing new ones, event IDs, redaction, and
// the client-facing serialisation.
//
// It wraps maunium.net/go/mautrix/federation/pdu, which implements the
// hashing, signing and redaction algorithms, and adds Myelin's Event type.
// pdu imports no other Myelin package; it sits under room, clientsync and
// the federation API.
package pdu

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jsonv2 "encoding/json/v2"

	"github.com/tidwall/gjson"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// ErrUnsupportedVersion is returned for room versions Myelin cannot handle.
var ErrUnsupportedVersion = errors.New("unsupported room version")

// Supported lists the room versions Myelin can create and join, and their
// stability, as advertised by /capabilities.
var Supported = map[id.RoomVersion]string{
	"3": "stable", "4": "stable", "5": "stable", "6": "stable", "7": "stable",
	"8": "stable", "9": "stable", "10": "stable", "11": "stable", "12": "stable",
}

// IsSupported reports whether v is in Supported.
func IsSupported(v id.RoomVersion) bool {
	_, ok := Supported[v]
	return ok
}

// StateKey identifies a state entry.
type StateKey = mpdu.StateKey

// Event is a PDU of a known room version, with its event ID.
type Event struct {
	*mpdu.PDU
	ID      id.EventID
	Version id.RoomVersion
	// Raw is the canonical federation JSON of the event as stored.
	raw []byte
}

// Parse decodes a PDU of room version v from its federation JSON.
func Parse(v id.RoomVersion, raw []byte) (*Event, error) {
	if !IsSupported(v) {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedVersion, v)
	}
	var p mpdu.PDU
	if err := jsonv2.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("decoding PDU: %w", err)
	}
	evID, err := p.GetEventID(v)
	if err != nil {
		return nil, fmt.Errorf("computing event ID: %w", err)
	}
	p.InternalMeta.EventID = evID
	return &Event{PDU: &p, ID: evID, Version: v, raw: raw}, nil
}

// ParseTrusted decodes a stored PDU whose event ID is already known, skipping
// the reference-hash computation.
func ParseTrusted(v id.RoomVersion, evID id.EventID, raw []byte) (*Event, error) {
	var p mpdu.PDU
	if err := jsonv2.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("decoding stored PDU %s: %w", evID, err)
	}
	p.InternalMeta.EventID = evID
	return &Event{PDU: &p, ID: evID, Version: v, raw: raw}, nil
}

// JSON returns the federation form of the event.
func (e *Event) JSON() []byte {
	if e.raw == nil {
		b, err := jsonv2.Marshal(e.PDU)
		if err != nil {
			panic(fmt.Sprintf("marshalling PDU: %v", err)) // PDU fields are all marshallable
		}
		e.raw = b
	}
	return e.raw
}

// IsState reports whether the event is a state event.
func (e *Event) IsState() bool { return e.StateKey != nil }

// Key returns the state key tuple of a state event.
func (e *Event) Key() StateKey {
	if e.StateKey == nil {
		return StateKey{Type: e.Type}
	}
	return StateKey{Type: e.Type, StateKey: *e.StateKey}
}

// Membership returns content.membership of a member event.
func (e *Event) Membership() string {
	return gjson.GetBytes(e.Content, "membership").Str
}

// RoomID returns the room of the event, deriving it for v12 create events.
func (e *Event) RoomID() id.RoomID {
	if e.PDU.RoomID == "" && e.Type == "m.room.create" {
		return id.RoomID("!" + strings.TrimPrefix(e.ID.String(), "$"))
	}
	return e.PDU.RoomID
}

// Proto is what a local sender asks for: everything but the DAG fields.
type Proto struct {
	Type     string
	StateKey *string
	Sender   id.UserID
	Content  json.RawMessage
	Redacts  id.EventID
	RoomID   id.RoomID
}

// BuildArgs are the DAG fields chosen by the room for a new event.
type BuildArgs struct {
	Version    id.RoomVersion
	AuthEvents []id.EventID
	PrevEvents []id.EventID
	Depth      int64
	Timestamp  int64
	ServerName string
	KeyID      id.KeyID
	Key        ed25519.PrivateKey
}

// Build creates, hashes and signs a new event.
func Build(p Proto, a BuildArgs) (*Event, error) {
	if !IsSupported(a.Version) {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedVersion, a.Version)
	}
	content := p.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	ev := &mpdu.PDU{
		AuthEvents:     nonNil(a.AuthEvents),
		Content:        []byte(content),
		Depth:          a.Depth,
		OriginServerTS: a.Timestamp,
		PrevEvents:     nonNil(a.PrevEvents),
		RoomID:         p.RoomID,
		Sender:         p.Sender,
		StateKey:       p.StateKey,
		Type:           p.Type,
	}
	if p.Redacts != "" {
		r := p.Redacts
		ev.Redacts = &r
		if a.Version.RedactsInContent() {
			// v11+ carries redacts in content; keep the top-level key too for
			// older clients, as Synapse does.
			var c map[string]any
			if err := json.Unmarshal(content, &c); err == nil {
				c["redacts"] = r
				content, _ = json.Marshal(c)
				ev.Content = []byte(content)
			}
		}
	}
	if err := ev.Sign(a.Version, a.ServerName, a.KeyID, a.Key); err != nil {
		return nil, fmt.Errorf("signing event: %w", err)
	}
	evID, err := ev.GetEventID(a.Version)
	if err != nil {
		return nil, fmt.Errorf("computing event ID: %w", err)
	}
	ev.InternalMeta.EventID = evID
	return &Event{PDU: ev, ID: evID, Version: a.Version}, nil
}

func nonNil(ids []id.EventID) []id.EventID {
	if ids == nil {
		return []id.EventID{}
	}
	return ids
}

// Redacted returns a copy of the event with its content stripped per the
// redaction algorithm of its room version.
func (e *Event) Redacted() *Event {
	c := e.PDU.Clone().Redact(e.Version)
	c.InternalMeta = e.PDU.InternalMeta
	return &Event{PDU: c, ID: e.ID, Version: e.Version}
}
