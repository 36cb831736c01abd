package room

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
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
	return s.format(ctx, ev, v, withRoomID, s.replacedEvents(ctx, []*Stored{ev}))
}

// format is Format with the events that evs replaced loaded already.
func (s *Service) format(ctx context.Context, ev *Stored, v Viewer, withRoomID bool, replaced map[int64]replacedEvent) ClientEvent {
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
	if r, ok := replaced[ev.ReplacesNID]; ok && ev.ReplacesKnown && ev.ReplacesNID != 0 {
		u.ReplacesState, u.PrevContent = r.id, r.content
	} else if ev.IsState() && ev.Snapshot != 0 && !ev.ReplacesKnown {
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
	replaced := s.replacedEvents(ctx, evs)
	out := make([]ClientEvent, len(evs))
	for i, ev := range evs {
		out[i] = s.format(ctx, ev, v, withRoomID, replaced)
	}
	return out
}

// replacedEvent is what unsigned shows of the state event another
// replaced: its ID (replaces_state) and content (prev_content).
type replacedEvent struct {
	id      id.EventID
	content json.RawMessage
}

// replacedEvents loads, a few hundred per query, the events that the
// state events among evs replaced, by nid. A failed load leaves
// prev_content out rather than failing the response.
func (s *Service) replacedEvents(ctx context.Context, evs []*Stored) map[int64]replacedEvent {
	var nids []any
	for _, ev := range evs {
		if ev.ReplacesKnown && ev.ReplacesNID != 0 && ev.Snapshot != 0 {
			nids = append(nids, ev.ReplacesNID)
		}
	}
	if len(nids) == 0 {
		return nil
	}
	out := make(map[int64]replacedEvent, len(nids))
	for len(nids) > 0 {
		batch := nids[:min(len(nids), 500)]
		nids = nids[len(batch):]
		rows, err := s.db.QueryContext(ctx, `SELECT event_nid, event_id, json FROM events WHERE event_nid IN (`+storage.Placeholders(1, len(batch))+`)`, batch...)
		if err != nil {
			s.log.Warn("loading replaced state events", "error", err)
			return out
		}
		for rows.Next() {
			var nid int64
			var evID, raw string
			if err := rows.Scan(&nid, &evID, &raw); err != nil {
				break
			}
			var body struct {
				Content json.RawMessage `json:"content"`
			}
			if json.Unmarshal([]byte(raw), &body) == nil {
				out[nid] = replacedEvent{id: id.EventID(evID), content: body.Content}
			}
		}
		rows.Close()
	}
	return out
}
