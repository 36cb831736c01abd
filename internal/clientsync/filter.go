package clientsync

import (
	"encoding/json"
	"path"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// EventFilter is the spec's EventFilter (filter.yaml): which events of a
// section to return and how many.
type EventFilter struct {
	Limit      *int      `json:"limit,omitempty"`
	Types      *[]string `json:"types,omitempty"`
	NotTypes   []string  `json:"not_types,omitempty"`
	Senders    *[]string `json:"senders,omitempty"`
	NotSenders []string  `json:"not_senders,omitempty"`
}

// RoomEventFilter adds the room-event options to EventFilter.
type RoomEventFilter struct {
	EventFilter
	Rooms                     *[]id.RoomID `json:"rooms,omitempty"`
	NotRooms                  []id.RoomID  `json:"not_rooms,omitempty"`
	LazyLoadMembers           bool         `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers   bool         `json:"include_redundant_members,omitempty"`
	ContainsURL               *bool        `json:"contains_url,omitempty"`
	UnreadThreadNotifications bool         `json:"unread_thread_notifications,omitempty"`
}

// RoomFilter filters the rooms section of /sync.
type RoomFilter struct {
	Rooms        *[]id.RoomID    `json:"rooms,omitempty"`
	NotRooms     []id.RoomID     `json:"not_rooms,omitempty"`
	IncludeLeave bool            `json:"include_leave,omitempty"`
	Timeline     RoomEventFilter `json:"timeline,omitempty"`
	State        RoomEventFilter `json:"state,omitempty"`
	Ephemeral    RoomEventFilter `json:"ephemeral,omitempty"`
	AccountData  RoomEventFilter `json:"account_data,omitempty"`
}

// Filter is a whole sync filter (filter.yaml, Filter).
type Filter struct {
	EventFields []string    `json:"event_fields,omitempty"`
	EventFormat string      `json:"event_format,omitempty"`
	Presence    EventFilter `json:"presence,omitempty"`
	AccountData EventFilter `json:"account_data,omitempty"`
	Room        RoomFilter  `json:"room,omitempty"`
}

// ParseFilter decodes and validates a filter definition.
func ParseFilter(raw []byte) (*Filter, error) {
	var f Filter
	if !json.Valid(raw) {
		return nil, mxerr.NotJSON.With("filter is not valid JSON")
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, mxerr.BadJSON.With("invalid filter: %v", err)
	}
	if f.EventFormat != "" && f.EventFormat != "client" && f.EventFormat != "federation" {
		return nil, mxerr.BadJSON.With("event_format must be client or federation")
	}
	for _, l := range []*int{f.Room.Timeline.Limit, f.Room.State.Limit, f.Presence.Limit, f.AccountData.Limit} {
		if l != nil && *l < 0 {
			return nil, mxerr.BadJSON.With("limits must not be negative")
		}
	}
	if err := f.validateIDs(); err != nil {
		return nil, err
	}
	return &f, nil
}

// validateIDs checks that the room and sender lists hold room and user
// IDs: a filter that names a malformed one is refused (as Synapse's filter
// schema does) rather than silently matching nothing.
func (f *Filter) validateIDs() error {
	checkRooms := func(field string, list []id.RoomID) error {
		for _, r := range list {
			if !validRoomID(r) {
				return mxerr.BadJSON.With("%s: %q is not a room ID", field, r)
			}
		}
		return nil
	}
	checkUsers := func(field string, list []string) error {
		for _, u := range list {
			if !validUserID(u) {
				return mxerr.BadJSON.With("%s: %q is not a user ID", field, u)
			}
		}
		return nil
	}
	deref := func(l *[]id.RoomID) []id.RoomID {
		if l == nil {
			return nil
		}
		return *l
	}
	derefS := func(l *[]string) []string {
		if l == nil {
			return nil
		}
		return *l
	}
	if err := checkRooms("room.rooms", deref(f.Room.Rooms)); err != nil {
		return err
	}
	if err := checkRooms("room.not_rooms", f.Room.NotRooms); err != nil {
		return err
	}
	events := map[string]*EventFilter{"presence": &f.Presence, "account_data": &f.AccountData}
	for name, rf := range map[string]*RoomEventFilter{"room.timeline": &f.Room.Timeline, "room.state": &f.Room.State,
		"room.ephemeral": &f.Room.Ephemeral, "room.account_data": &f.Room.AccountData} {
		if err := checkRooms(name+".rooms", deref(rf.Rooms)); err != nil {
			return err
		}
		if err := checkRooms(name+".not_rooms", rf.NotRooms); err != nil {
			return err
		}
		events[name] = &rf.EventFilter
	}
	for name, ef := range events {
		if err := checkUsers(name+".senders", derefS(ef.Senders)); err != nil {
			return err
		}
		if err := checkUsers(name+".not_senders", ef.NotSenders); err != nil {
			return err
		}
	}
	return nil
}

// validRoomID accepts "!opaque" (room version 12) and "!opaque:server".
func validRoomID(r id.RoomID) bool {
	s := string(r)
	return len(s) > 1 && len(s) <= 255 && s[0] == '!' && !strings.ContainsAny(s, " \t\n\x00")
}

// validUserID accepts "@localpart:server", with the historical (relaxed)
// localpart grammar.
func validUserID(u string) bool {
	if len(u) > 255 {
		return false
	}
	local, server, err := id.UserID(u).ParseAndValidateRelaxed()
	return err == nil && local != "" && server != ""
}

func globMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok || p == s {
			return true
		}
	}
	return false
}

// Match reports whether an event of the given type and sender passes f.
func (f *EventFilter) Match(evType string, sender id.UserID) bool {
	if f.Types != nil && !globMatch(*f.Types, evType) {
		return false
	}
	if globMatch(f.NotTypes, evType) {
		return false
	}
	if f.Senders != nil && !globMatch(*f.Senders, sender.String()) {
		return false
	}
	return !globMatch(f.NotSenders, sender.String())
}

// MatchRoom reports whether the room passes the filter's room lists.
func (f *RoomEventFilter) MatchRoom(roomID id.RoomID) bool {
	if f.Rooms != nil && !containsRoom(*f.Rooms, roomID) {
		return false
	}
	return !containsRoom(f.NotRooms, roomID)
}

// MatchEvent applies the event filter and contains_url.
func (f *RoomEventFilter) MatchEvent(ev *room.Stored) bool {
	if !f.Match(ev.Type, ev.Sender) {
		return false
	}
	if f.ContainsURL != nil {
		var c struct {
			URL any `json:"url"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		if (c.URL != nil) != *f.ContainsURL {
			return false
		}
	}
	return true
}

// MatchRoom reports whether the room passes the rooms section's lists.
func (f *RoomFilter) MatchRoom(roomID id.RoomID) bool {
	if f.Rooms != nil && !containsRoom(*f.Rooms, roomID) {
		return false
	}
	return !containsRoom(f.NotRooms, roomID)
}

func containsRoom(list []id.RoomID, r id.RoomID) bool {
	for _, x := range list {
		if x == r {
			return true
		}
	}
	return false
}

// FilterEvents returns the events that pass f.
func (f *RoomEventFilter) FilterEvents(evs []*room.Stored) []*room.Stored {
	out := evs[:0:0]
	for _, ev := range evs {
		if f.MatchEvent(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// ParseRoomEventFilter decodes and validates a RoomEventFilter given on
// its own, as /search takes it in its body.
func ParseRoomEventFilter(raw []byte) (*RoomEventFilter, error) {
	var f Filter
	if !json.Valid(raw) {
		return nil, mxerr.NotJSON.With("filter is not valid JSON")
	}
	if err := json.Unmarshal(raw, &f.Room.Timeline); err != nil {
		return nil, mxerr.BadJSON.With("invalid filter: %v", err)
	}
	if l := f.Room.Timeline.Limit; l != nil && *l < 0 {
		return nil, mxerr.BadJSON.With("limits must not be negative")
	}
	if err := f.validateIDs(); err != nil {
		return nil, err
	}
	return &f.Room.Timeline, nil
}
