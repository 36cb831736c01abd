package pdu

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

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
	// Referenced returns an event named in AuthEvents or PrevEvents. Only
	// room versions 1 and 2 need it: their references carry the reference
	// hash of the referenced event.
	Referenced func(id.EventID) (*Event, error)
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
	var redacts *id.EventID
	if p.Redacts != "" {
		r := p.Redacts
		redacts = &r
		if a.Version.RedactsInContent() {
			// v11+ carries redacts in content; keep the top-level key too for
			// older clients, as Synapse does.
			var c map[string]any
			if err := json.Unmarshal(content, &c); err == nil {
				c["redacts"] = r
				content, _ = json.Marshal(c)
			}
		}
	}
	if hasV1Format(a.Version) {
		return buildV1(p, a, content, redacts)
	}
	ev := &mpdu.PDU{
		AuthEvents:     nonNil(a.AuthEvents),
		Content:        []byte(content),
		Depth:          a.Depth,
		OriginServerTS: a.Timestamp,
		PrevEvents:     nonNil(a.PrevEvents),
		Redacts:        redacts,
		RoomID:         p.RoomID,
		Sender:         p.Sender,
		StateKey:       p.StateKey,
		Type:           p.Type,
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
