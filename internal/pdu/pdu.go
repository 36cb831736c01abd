// Package pdu is the event format of each room version: parsing stored or
// received PDUs, building and signing new ones, event IDs, reference and
// content hashes, signature checks, redaction, and the strict format and
// canonical-JSON checks applied to PDUs received over federation.
//
// It wraps maunium.net/go/mautrix/federation/pdu, which implements the
// hashing, signing and redaction algorithms, and adds Myelin's Event type.
// pdu imports no other Myelin package; it sits under room, clientsync and
// the federation API.
//
// Every room version shares one in-memory view, mautrix's PDU with plain
// event ID lists, which room, eventauth and stateres read. Room versions 1
// and 2 have a different wire form (event_id in the event, references as
// [event ID, hashes] pairs); for those the Event also keeps the original
// RoomV1PDU, and JSON, hashing, signing and verification use it.
package pdu

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"

	jsonv2 "encoding/json/v2"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

func init() {
	// eventauth asks the create event for its ID (auth rule 5.3.1), which
	// mautrix can only compute for room versions 3 and later. Every PDU
	// this package hands out carries its event ID in InternalMeta (set
	// right after computing it, or from the trusted store), so mautrix may
	// use that instead. This is a mautrix setting, not state of ours.
	mpdu.UseInternalMetaForGetEventID = true
}

// ErrUnsupportedVersion is returned for room versions Myelin cannot handle.
var ErrUnsupportedVersion = errors.New("unsupported room version")

// Supported lists the room versions Myelin can create and join, and their
// stability, as advertised by /capabilities.
var Supported = map[id.RoomVersion]string{
	"1": "stable", "2": "stable",
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
//
// The embedded PDU is the uniform view of every room version. Its methods
// that depend on the wire form (hashes, signatures, IDs) are shadowed here
// so that room versions 1 and 2 use their own form.
type Event struct {
	*mpdu.PDU
	ID      id.EventID
	Version id.RoomVersion
	// raw is the federation JSON of the event as stored, or nil until
	// JSON is first called on a built event.
	raw []byte
	// v1 is the wire form of a room version 1 or 2 event; nil otherwise.
	v1 *mpdu.RoomV1PDU
}

// Parse decodes a PDU of room version v from its federation JSON. For room
// versions 3 and later it computes the event ID from the reference hash;
// versions 1 and 2 carry it in the event.
func Parse(v id.RoomVersion, raw []byte) (*Event, error) {
	if !IsSupported(v) {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedVersion, v)
	}
	if hasV1Format(v) {
		return parseV1(v, "", raw)
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
	if hasV1Format(v) {
		return parseV1(v, evID, raw)
	}
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
		var b []byte
		var err error
		if e.v1 != nil {
			b, err = jsonv2.Marshal(e.v1)
		} else {
			b, err = jsonv2.Marshal(e.PDU)
		}
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

// AuthRefs returns the events the event's authorization depends on: its
// auth_events and, from room version 12 where the create event is implied
// by the room ID rather than listed, the room's create event. An auth
// chain is the closure of AuthRefs; without the create event a remote
// server cannot authorize anything of a version 12 room.
func (e *Event) AuthRefs() []id.EventID {
	if !e.Version.RoomIDIsCreateEventID() || e.Type == "m.room.create" {
		return e.AuthEvents
	}
	create := id.EventID("$" + strings.TrimPrefix(e.RoomID().String(), "!"))
	if slices.Contains(e.AuthEvents, create) {
		return e.AuthEvents
	}
	return append(slices.Clip(e.AuthEvents), create)
}

// ReferenceHash returns the event's reference hash: the SHA-256 of its
// redacted canonical form without signatures. Room versions 3 and later
// derive the event ID from it; versions 1 and 2 quote it next to each
// reference in auth_events and prev_events.
func (e *Event) ReferenceHash() ([32]byte, error) {
	if e.v1 != nil {
		return e.v1.GetReferenceHash(e.Version)
	}
	return e.PDU.GetReferenceHash(e.Version)
}

// GetReferenceHash is ReferenceHash for callers that use mautrix's
// signature; the room version must be the event's own.
func (e *Event) GetReferenceHash(v id.RoomVersion) ([32]byte, error) {
	if v != e.Version {
		return [32]byte{}, fmt.Errorf("event %s is of room version %s, not %s", e.ID, e.Version, v)
	}
	return e.ReferenceHash()
}

// Redacted returns a copy of the event with its content stripped per the
// redaction algorithm of its room version.
func (e *Event) Redacted() *Event {
	if e.v1 != nil {
		r := e.v1.Clone().Redact(e.Version)
		p := fromV1(r)
		p.InternalMeta = e.PDU.InternalMeta
		return &Event{PDU: p, ID: e.ID, Version: e.Version, v1: r}
	}
	c := e.PDU.Clone().Redact(e.Version)
	c.InternalMeta = e.PDU.InternalMeta
	return &Event{PDU: c, ID: e.ID, Version: e.Version}
}

// ToClientEvent returns the event in mautrix's client form, with its event
// ID and, for event types mautrix knows, content parsed into the typed
// struct (power levels read the creators of a v12 room from a parsed
// create event).
func (e *Event) ToClientEvent(v id.RoomVersion) (*event.Event, error) {
	var evt *event.Event
	var err error
	if e.v1 != nil {
		evt, err = e.v1.ToClientEvent(v)
	} else {
		evt, err = e.PDU.ToClientEvent(v)
	}
	if err != nil {
		return nil, err
	}
	evt.ID = e.ID
	evt.RoomID = e.RoomID()
	// Unknown event types stay raw; that is not an error.
	_ = evt.Content.ParseRaw(evt.Type)
	return evt, nil
}

// Sign adds serverName's signature to the event, as a resident server does
// to a join it authorised or an invitee's server to an invite. The event
// ID does not change: signatures are not part of the reference hash.
func (e *Event) Sign(serverName string, keyID id.KeyID, key ed25519.PrivateKey) error {
	if e.v1 != nil {
		if err := e.v1.Sign(e.Version, serverName, keyID, key); err != nil {
			return fmt.Errorf("signing event %s: %w", e.ID, err)
		}
		e.PDU.Signatures = e.v1.Signatures
	} else if err := e.PDU.Sign(e.Version, serverName, keyID, key); err != nil {
		return fmt.Errorf("signing event %s: %w", e.ID, err)
	}
	e.raw = nil
	return nil
}
