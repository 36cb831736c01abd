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
	// PDUFields is set for the federation event format (a filter's
	// event_format "federation"); nil leaves its fields out.
	*PDUFields
}

// PDUFields are the fields of a stored PDU that the client format leaves
// out, copied as stored: their shape depends on the room version.
type PDUFields struct {
	AuthEvents json.RawMessage `json:"auth_events,omitempty"`
	PrevEvents json.RawMessage `json:"prev_events,omitempty"`
	Depth      json.RawMessage `json:"depth,omitempty"`
	Hashes     json.RawMessage `json:"hashes,omitempty"`
	Signatures json.RawMessage `json:"signatures,omitempty"`
	Origin     json.RawMessage `json:"origin,omitempty"`
	PrevState  json.RawMessage `json:"prev_state,omitempty"`
}

// Unsigned is the server-added part of a client event.
type Unsigned struct {
	Age             int64           `json:"age"`
	TransactionID   string          `json:"transaction_id,omitempty"`
	PrevContent     json.RawMessage `json:"prev_content,omitempty"`
	PrevSender      id.UserID       `json:"prev_sender,omitempty"`
	ReplacesState   id.EventID      `json:"replaces_state,omitempty"`
	RedactedBecause *ClientEvent    `json:"redacted_because,omitempty"`
	// Membership is the viewer's membership just after the event (spec
	// v1.11), set where the caller knows it (see MembershipsAt).
	Membership string `json:"membership,omitempty"`
	// Relations are the bundled aggregations of child events (m.thread,
	// m.replace, m.reference), added by the relations package.
	Relations map[string]any `json:"m.relations,omitempty"`
}

// Viewer says who an event is formatted for: the transaction ID is shown
// only to the device that sent the event.
type Viewer struct {
	User   id.UserID
	Device id.DeviceID
	// Federation asks for the federation format: the client form with the
	// room ID and the PDU's own fields (a filter's event_format).
	Federation bool
}

// Format renders ev for a client. withRoomID is false inside /sync, where
// the room ID is implied by the section.
func (s *Service) Format(ctx context.Context, ev *Stored, v Viewer, withRoomID bool) ClientEvent {
	return s.FormatAll(ctx, []*Stored{ev}, v, withRoomID)[0]
}

// Decorator adds data derived from other events, such as bundled
// aggregations, to a page of formatted events: once per page, so it can
// batch its reads. out[i] is evs[i].
type Decorator interface {
	Decorate(ctx context.Context, rooms *Service, v Viewer, evs []*Stored, out []ClientEvent)
}

// WithDecorator runs d on every page of events formatted for clients
// (/sync, /messages, /event, /relations, ...).
func WithDecorator(d Decorator) Option {
	return func(s *Service) { s.decorators = append(s.decorators, d) }
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
	if withRoomID || v.Federation {
		ce.RoomID = ev.RoomID()
	}
	if v.Federation {
		ce.PDUFields = pduFields(ev)
	}
	if ev.Type == "m.room.redaction" {
		ce.Redacts = redactsOf(ev.Event)
	}
	u := &Unsigned{Age: max(0, s.now().UnixMilli()-ev.OriginServerTS)}
	if ev.TxnID != "" && ev.Sender == v.User && ev.TxnDevice == v.Device {
		u.TransactionID = ev.TxnID
	}
	if r, ok := replaced[ev.ReplacesNID]; ok && ev.ReplacesKnown && ev.ReplacesNID != 0 {
		u.ReplacesState, u.PrevContent, u.PrevSender = r.id, r.content, r.sender
	} else if ev.IsState() && ev.Snapshot != 0 && !ev.ReplacesKnown {
		if ref, ok, err := s.stateEntry(ctx, ev.Snapshot, ev.Key()); err == nil && ok {
			u.ReplacesState = ref.ID
			if prev, err := s.Event(ctx, ref.ID); err == nil {
				u.PrevContent, u.PrevSender = json.RawMessage(prev.Content), prev.Sender
			}
		}
	}
	if ev.RedactedBy != "" {
		if red, err := s.Event(ctx, ev.RedactedBy); err == nil {
			rc := s.FormatBare(ctx, []*Stored{red}, v, withRoomID)[0]
			u.RedactedBecause = &rc
		}
	}
	ce.Unsigned = u
	return ce
}

// FormatAll renders a list of events.
func (s *Service) FormatAll(ctx context.Context, evs []*Stored, v Viewer, withRoomID bool) []ClientEvent {
	out := s.FormatBare(ctx, evs, v, withRoomID)
	s.Decorate(ctx, v, evs, out)
	return out
}

// Decorate runs the decorators over events formatted by FormatBare. The
// decorators set fields of each event's Unsigned, which FormatBare always
// allocates, so copies of out see them too.
func (s *Service) Decorate(ctx context.Context, v Viewer, evs []*Stored, out []ClientEvent) {
	for _, d := range s.decorators {
		d.Decorate(ctx, s, v, evs, out)
	}
}

// FormatBare is FormatAll without decorators: for events shown inside
// another event's aggregations.
func (s *Service) FormatBare(ctx context.Context, evs []*Stored, v Viewer, withRoomID bool) []ClientEvent {
	replaced := s.replacedEvents(ctx, evs)
	out := make([]ClientEvent, len(evs))
	for i, ev := range evs {
		out[i] = s.format(ctx, ev, v, withRoomID, replaced)
	}
	return out
}

// replacedEvent is what unsigned shows of the state event another
// replaced: its ID (replaces_state), content (prev_content) and sender
// (prev_sender, as Synapse sets it).
type replacedEvent struct {
	id      id.EventID
	content json.RawMessage
	sender  id.UserID
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
				Sender  id.UserID       `json:"sender"`
			}
			if json.Unmarshal([]byte(raw), &body) == nil {
				out[nid] = replacedEvent{id: id.EventID(evID), content: body.Content, sender: body.Sender}
			}
		}
		rows.Close()
	}
	return out
}

// pduFields copies the federation-only fields of ev's stored JSON.
func pduFields(ev *Stored) *PDUFields {
	var f PDUFields
	_ = json.Unmarshal(ev.JSON(), &struct {
		AuthEvents *json.RawMessage `json:"auth_events"`
		PrevEvents *json.RawMessage `json:"prev_events"`
		Depth      *json.RawMessage `json:"depth"`
		Hashes     *json.RawMessage `json:"hashes"`
		Signatures *json.RawMessage `json:"signatures"`
		Origin     *json.RawMessage `json:"origin"`
		PrevState  *json.RawMessage `json:"prev_state"`
	}{&f.AuthEvents, &f.PrevEvents, &f.Depth, &f.Hashes, &f.Signatures, &f.Origin, &f.PrevState})
	return &f
}

// AnnotateMembership sets unsigned.membership on out, the formatted evs
// (events of one room in stream order): user's membership just after each
// event ("leave" before they ever joined; left out where the state is
// unknown, in backfilled history). cur, the user's current membership in
// the room, answers for every event at or after its position without a
// lookup, which in a sync is nearly every event; the others cost one state
// lookup, then the user's member events among evs carry it forward.
func (s *Service) AnnotateMembership(ctx context.Context, user id.UserID, evs []*Stored, out []ClientEvent, cur Membership) {
	key := StateKeyOf("m.room.member", user.String())
	m := ""
	for i, ev := range evs {
		if i >= len(out) || out[i].Unsigned == nil {
			return
		}
		if cur.EventID != "" && ev.StreamPos >= cur.StreamPos {
			out[i].Unsigned.Membership = cur.Membership
			continue
		}
		if m == "" {
			m = s.membershipBefore(ctx, ev, key)
		}
		if ev.IsState() && *ev.StateKey == user.String() && ev.Type == "m.room.member" && !ev.Rejected {
			m = ev.Membership()
		}
		out[i].Unsigned.Membership = m
	}
}

// membershipBefore returns the membership of the member key in the state
// before ev: "leave" when unset, "" when that state is unknown (backfilled
// history has no snapshot; the create event has an empty one).
func (s *Service) membershipBefore(ctx context.Context, ev *Stored, key StateKeyT) string {
	if ev.Snapshot == 0 {
		if ev.Type == "m.room.create" && ev.IsState() && *ev.StateKey == "" {
			return "leave"
		}
		return ""
	}
	ref, ok, err := s.stateEntry(ctx, ev.Snapshot, key)
	if err != nil {
		return ""
	}
	if !ok {
		return "leave"
	}
	mev, err := s.Event(ctx, ref.ID)
	if err != nil {
		return ""
	}
	return mev.Membership()
}
