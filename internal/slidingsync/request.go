package slidingsync

import (
	"bytes"
	"encoding/json"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// Req is the body of a sliding sync request. Lists and their details are
// not sticky (the client sends them whole each time, as MSC4186 has it);
// room subscriptions are, until unsubscribe_rooms names them, so that a
// client sending them once and one sending them every time both work.
type Req struct {
	// Pos, Timeout (milliseconds) and SetPresence may come in the body, as
	// the MSC's later revision has them; the query parameters win.
	Pos         string `json:"pos,omitempty"`
	Timeout     *int64 `json:"timeout,omitempty"`
	SetPresence string `json:"set_presence,omitempty"`

	ConnID            string                    `json:"conn_id,omitempty"`
	TxnID             string                    `json:"txn_id,omitempty"`
	Lists             map[string]ListReq        `json:"lists,omitempty"`
	RoomSubscriptions map[id.RoomID]RoomDetails `json:"room_subscriptions,omitempty"`
	UnsubscribeRooms  []id.RoomID               `json:"unsubscribe_rooms,omitempty"`
	Extensions        ExtensionsReq             `json:"extensions"`
}

// RoomDetails is what the client wants of each room of a list or
// subscription.
type RoomDetails struct {
	RequiredState RequiredState `json:"required_state"`
	TimelineLimit int           `json:"timeline_limit"`
}

// RequiredState is the state a room's entry carries. Include holds
// [type, state_key] pairs: "*" matches any type or key, "$ME" is the
// user, and ["m.room.member", "$LAZY"] the members who sent the
// timeline's events. Exclude holds pairs left out of what Include
// matches (lazy members are never excluded).
type RequiredState struct {
	Include [][]string
	Exclude [][]string
}

// stateElement is one entry of the object form: a missing field matches
// anything.
type stateElement struct {
	Type     *string `json:"type"`
	StateKey *string `json:"state_key"`
}

func (e stateElement) pair() []string {
	p := []string{"*", "*"}
	if e.Type != nil {
		p[0] = *e.Type
	}
	if e.StateKey != nil {
		p[1] = *e.StateKey
	}
	return p
}

// UnmarshalJSON reads either form of required_state: the list of
// [type, state_key] pairs that clients send today, or the MSC's later
// {"include": [...], "exclude": [...], "lazy_members": true}.
func (rs *RequiredState) UnmarshalJSON(b []byte) error {
	trimmed := bytes.TrimSpace(b)
	switch {
	case len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")):
		return nil
	case trimmed[0] == '[':
		return json.Unmarshal(trimmed, &rs.Include)
	}
	var obj struct {
		Include     []stateElement `json:"include"`
		Exclude     []stateElement `json:"exclude"`
		LazyMembers bool           `json:"lazy_members"`
	}
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return err
	}
	for _, e := range obj.Include {
		rs.Include = append(rs.Include, e.pair())
	}
	for _, e := range obj.Exclude {
		rs.Exclude = append(rs.Exclude, e.pair())
	}
	if obj.LazyMembers {
		rs.Include = append(rs.Include, []string{"m.room.member", "$LAZY"})
	}
	return nil
}

// ListReq is one named list: the ranges of its rooms, sorted by recency,
// that the client wants, and the filters choosing them.
type ListReq struct {
	Ranges [][]int64 `json:"ranges,omitempty"`
	// Range is the later revision's single range.
	Range []int64 `json:"range,omitempty"`
	RoomDetails
	Filters *Filters `json:"filters,omitempty"`
}

// Filters select a list's rooms. Every field set must hold (AND); an
// absent field does not filter.
type Filters struct {
	IsDM        *bool       `json:"is_dm,omitempty"`
	Spaces      []id.RoomID `json:"spaces,omitempty"`
	IsEncrypted *bool       `json:"is_encrypted,omitempty"`
	IsInvite    *bool       `json:"is_invite,omitempty"`
	// IsInvited is the later revision's name of IsInvite.
	IsInvited *bool `json:"is_invited,omitempty"`
	// RoomTypes and NotRoomTypes hold create-event types; null stands for
	// rooms without one. NotRoomTypes wins where both name a type.
	RoomTypes    []*string `json:"room_types,omitempty"`
	NotRoomTypes []*string `json:"not_room_types,omitempty"`
	// Tags and NotTags (Synapse) match the room's m.tag account data;
	// NotTags wins.
	Tags    []string `json:"tags,omitempty"`
	NotTags []string `json:"not_tags,omitempty"`
}

// ExtensionsReq configures the extensions.
type ExtensionsReq struct {
	ToDevice    *ToDeviceReq `json:"to_device,omitempty"`
	E2EE        *EnabledReq  `json:"e2ee,omitempty"`
	AccountData *ScopedReq   `json:"account_data,omitempty"`
	Receipts    *ScopedReq   `json:"receipts,omitempty"`
	Typing      *ScopedReq   `json:"typing,omitempty"`
}

// EnabledReq turns an extension on.
type EnabledReq struct {
	Enabled *bool `json:"enabled,omitempty"`
}

// on reports whether the extension is enabled.
func (e *EnabledReq) on() bool { return e != nil && e.Enabled != nil && *e.Enabled }

// ToDeviceReq configures the to-device extension: since acknowledges the
// messages of the response whose next_batch it is.
type ToDeviceReq struct {
	EnabledReq
	Limit *int   `json:"limit,omitempty"`
	Since string `json:"since,omitempty"`
}

// ScopedReq configures an extension about rooms: lists and rooms name the
// lists whose windows and the subscribed rooms it covers. Absent, it
// covers every list, and every subscription; "*" in rooms stands for every
// subscription.
type ScopedReq struct {
	EnabledReq
	Lists []string `json:"lists,omitempty"`
	// nil (absent) differs from empty: empty covers nothing.
	Rooms []id.RoomID `json:"rooms,omitempty"`
}

// Limits on what one request may ask.
const (
	maxLists         = 100
	maxTimelineLimit = 1000
	maxRequiredState = 1000
	maxRangeEnd      = 1 << 31
	maxConnIDLength  = 255
)

// validate checks a request against the MSC's shapes, so that bad input
// gets 400 M_INVALID_PARAM rather than surprising the builder.
func (r *Req) validate() error {
	if len(r.ConnID) > maxConnIDLength {
		return mxerr.InvalidParam.With("conn_id is too long")
	}
	if len(r.Lists) > maxLists {
		return mxerr.InvalidParam.With("too many lists")
	}
	switch r.SetPresence {
	case "", "online", "offline", "unavailable":
	default:
		return mxerr.InvalidParam.With("set_presence must be online, offline or unavailable")
	}
	if r.Timeout != nil && *r.Timeout < 0 {
		return mxerr.InvalidParam.With("timeout must not be negative")
	}
	for name, l := range r.Lists {
		if l.Range != nil {
			l.Ranges = append(l.Ranges, l.Range)
			l.Range = nil
		}
		if f := l.Filters; f != nil && f.IsInvite == nil {
			f.IsInvite = f.IsInvited
		}
		r.Lists[name] = l
		for _, rg := range l.Ranges {
			if len(rg) != 2 || rg[0] < 0 || rg[1] < rg[0] || rg[1] > maxRangeEnd {
				return mxerr.InvalidParam.With("list %q: each range must be [start, end] with 0 <= start <= end", name)
			}
		}
		if err := l.RoomDetails.validate(); err != nil {
			return err
		}
		if f := l.Filters; f != nil {
			for _, s := range f.Spaces {
				if !validRoomID(s) {
					return mxerr.InvalidParam.With("list %q: bad space ID", name)
				}
			}
		}
	}
	for roomID, d := range r.RoomSubscriptions {
		if !validRoomID(roomID) {
			return mxerr.InvalidParam.With("room_subscriptions: bad room ID")
		}
		if err := d.validate(); err != nil {
			return err
		}
	}
	for _, roomID := range r.UnsubscribeRooms {
		if !validRoomID(roomID) {
			return mxerr.InvalidParam.With("unsubscribe_rooms: bad room ID")
		}
	}
	if td := r.Extensions.ToDevice; td != nil && td.Limit != nil && *td.Limit < 0 {
		return mxerr.InvalidParam.With("to_device limit must not be negative")
	}
	return nil
}

func (d *RoomDetails) validate() error {
	if d.TimelineLimit < 0 || d.TimelineLimit > maxTimelineLimit {
		return mxerr.InvalidParam.With("timeline_limit must be between 0 and %d", maxTimelineLimit)
	}
	if len(d.RequiredState.Include)+len(d.RequiredState.Exclude) > maxRequiredState {
		return mxerr.InvalidParam.With("required_state is too long")
	}
	for _, pair := range slices.Concat(d.RequiredState.Include, d.RequiredState.Exclude) {
		if len(pair) != 2 {
			return mxerr.InvalidParam.With("required_state entries must be [type, state_key]")
		}
	}
	return nil
}

// validRoomID reports whether r looks like a room ID: the sigil and
// something after it.
func validRoomID(r id.RoomID) bool { return len(r) > 1 && r[0] == '!' }
