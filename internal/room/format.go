package room

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// ClientEvent is the client-server API form of an event.
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        id.EventID      `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         id.RoomID       `json:"room_id,omitempty"`
	Sender         id.UserID       `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        id.EventID      `json:"redacts,omitempty"`
	Unsigned       *Unsigned       `json:"unsigned,omitempty"`
}

// Unsigned is the server-added part of a client event.
type Unsigned struct {
	Age             int64           `json:"age"`
	TransactionID   string          `json:"transaction_id,omitempty"`
	PrevContent     json.RawMessage `json:"prev_content,omitempty"`
	ReplacesState   id.EventID      `json:"replaces_state,omitempty"`
	RedactedBecause *ClientEvent    `json:"redacted_because,omitempty"`
}

// Viewer says who an event is formatted for: the transaction ID is shown
// only to the device that sent the event.
type Viewer struct {
	User   id.UserID
	Device id.DeviceID
}

// Format renders ev for a client. withRoomID is false inside /sync, where
// the room ID is implied by the section.
func (s *Service) Format(ctx context.Context, ev *Stored, v Viewer, withRoomID bool) ClientEvent {
	ce := ClientEvent{
		Content:        json.RawMessage(ev.Content),
		EventID:        ev.ID,
		OriginServerTS: ev.OriginServerTS,
		Sender:         ev.Sender,
		StateKey:       ev.StateKey,
		Type:           ev.Type,
	}
	if len(ce.Content) == 0 {
		ce.Content = json.RawMessage("{}")
	}
	if withRoomID {
		ce.RoomID = ev.RoomID()
	}
	if ev.Type == "m.room.redaction" {
		ce.Redacts = redactsOf(ev.Event)
	}
	u := &Unsigned{Age: max(0, s.now().UnixMilli()-ev.OriginServerTS)}
	if ev.TxnID != "" && ev.Sender == v.User && ev.TxnDevice == v.Device {
		u.TransactionID = ev.TxnID
	}
	if ev.IsState() && ev.Snapshot != 0 {
		if ref, ok, err := s.stateEntry(ctx, ev.Snapshot, ev.Key()); err == nil && ok {
			u.ReplacesState = ref.ID
			if prev, err := s.Event(ctx, ref.ID); err == nil {
				u.PrevContent = json.RawMessage(prev.Content)
			}
		}
	}
	if ev.RedactedBy != "" {
		if red, err := s.Event(ctx, ev.RedactedBy); err == nil {
			rc := s.Format(ctx, red, v, withRoomID)
			u.RedactedBecause = &rc
		}
	}
	ce.Unsigned = u
	return ce
}

// FormatAll renders a list of events.
func (s *Service) FormatAll(ctx context.Context, evs []*Stored, v Viewer, withRoomID bool) []ClientEvent {
	out := make([]ClientEvent, len(evs))
	for i, ev := range evs {
		out[i] = s.Format(ctx, ev, v, withRoomID)
	}
	return out
}
