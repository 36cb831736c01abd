package pdu

import (
	"crypto/rand"
	"encoding/json"
	"fmt"

	jsonv2 "encoding/json/v2"

	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// hasV1Format reports whether room version v uses the event format of
// room versions 1 and 2: event IDs chosen by the origin server and carried
// in the event, and references paired with reference hashes.
func hasV1Format(v id.RoomVersion) bool {
	return v.EventIDFormat() == id.EventIDFormatCustom
}

// parseV1 decodes a room version 1 or 2 PDU. If want is set (a stored
// event), the event_id inside the JSON must match it.
func parseV1(v id.RoomVersion, want id.EventID, raw []byte) (*Event, error) {
	var w mpdu.RoomV1PDU
	if err := jsonv2.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("decoding v%s PDU: %w", v, err)
	}
	if w.EventID == "" {
		return nil, fmt.Errorf("decoding v%s PDU: no event_id", v)
	}
	if want != "" && w.EventID != want {
		return nil, fmt.Errorf("decoding stored PDU %s: its event_id is %s", want, w.EventID)
	}
	return &Event{PDU: fromV1(&w), ID: w.EventID, Version: v, raw: raw, v1: &w}, nil
}

// fromV1 returns the uniform view of a room version 1 or 2 PDU: the same
// fields, with plain event ID lists. Content, hashes and signatures are
// shared, not copied; neither side modifies them in place.
func fromV1(w *mpdu.RoomV1PDU) *mpdu.PDU {
	p := &mpdu.PDU{
		AuthEvents:           refIDs(w.AuthEvents),
		Content:              w.Content,
		Depth:                w.Depth,
		Hashes:               w.Hashes,
		OriginServerTS:       w.OriginServerTS,
		PrevEvents:           refIDs(w.PrevEvents),
		Redacts:              w.Redacts,
		RoomID:               w.RoomID,
		Sender:               w.Sender,
		Signatures:           w.Signatures,
		StateKey:             w.StateKey,
		Sticky:               w.Sticky,
		Type:                 w.Type,
		Unsigned:             w.Unsigned,
		Unknown:              w.Unknown,
		DeprecatedPrevState:  w.DeprecatedPrevState,
		DeprecatedOrigin:     w.DeprecatedOrigin,
		DeprecatedMembership: w.DeprecatedMembership,
	}
	p.InternalMeta.EventID = w.EventID
	return p
}

func refIDs(refs []mpdu.V1EventReference) []id.EventID {
	ids := make([]id.EventID, len(refs))
	for i, r := range refs {
		ids[i] = r.ID
	}
	return ids
}

// buildV1 builds a room version 1 or 2 event: a fresh event ID in our
// namespace, and references carrying the reference hashes of the events
// they name.
func buildV1(p Proto, a BuildArgs, content json.RawMessage, redacts *id.EventID) (*Event, error) {
	authRefs, err := v1Refs(a, a.AuthEvents)
	if err != nil {
		return nil, err
	}
	prevRefs, err := v1Refs(a, a.PrevEvents)
	if err != nil {
		return nil, err
	}
	w := &mpdu.RoomV1PDU{
		AuthEvents:     authRefs,
		Content:        []byte(content),
		Depth:          a.Depth,
		EventID:        NewV1EventID(a.ServerName),
		OriginServerTS: a.Timestamp,
		PrevEvents:     prevRefs,
		Redacts:        redacts,
		RoomID:         p.RoomID,
		Sender:         p.Sender,
		StateKey:       p.StateKey,
		Type:           p.Type,
	}
	if err := w.Sign(a.Version, a.ServerName, a.KeyID, a.Key); err != nil {
		return nil, fmt.Errorf("signing event: %w", err)
	}
	return &Event{PDU: fromV1(w), ID: w.EventID, Version: a.Version, v1: w}, nil
}

func v1Refs(a BuildArgs, ids []id.EventID) ([]mpdu.V1EventReference, error) {
	refs := make([]mpdu.V1EventReference, 0, len(ids))
	for _, evID := range ids {
		if a.Referenced == nil {
			return nil, fmt.Errorf("room version %s needs the referenced event %s", a.Version, evID)
		}
		ev, err := a.Referenced(evID)
		if err != nil {
			return nil, fmt.Errorf("loading referenced event %s: %w", evID, err)
		}
		h, err := ev.ReferenceHash()
		if err != nil {
			return nil, fmt.Errorf("reference hash of %s: %w", evID, err)
		}
		refs = append(refs, mpdu.V1EventReference{ID: evID, Hashes: mpdu.Hashes{SHA256: h[:]}})
	}
	return refs, nil
}

// NewV1EventID returns a fresh event ID of room versions 1 and 2,
// $opaque:server, with 128 bits of randomness in the opaque part.
func NewV1EventID(serverName string) id.EventID {
	return id.EventID("$" + rand.Text() + ":" + serverName)
}
