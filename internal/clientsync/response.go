package clientsync

import (
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/room"
)

// Response is the body of GET /sync (sync.yaml).
type Response struct {
	NextBatch   string      `json:"next_batch"`
	Rooms       Rooms       `json:"rooms"`
	AccountData EventList   `json:"account_data"`
	Presence    EventList   `json:"presence"`
	ToDevice    EventList   `json:"to_device"`
	DeviceLists DeviceLists `json:"device_lists"`
	// OneTimeKeysCount and UnusedFallbackKeyTypes are filled by e2ee.
	OneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	UnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`

	// toDeviceCut is where the to-device section stopped when more
	// messages wait (see Token.ToDevice).
	toDeviceCut e2ee.ToDeviceCursor
}

// DeviceLists reports device list changes for end-to-end encryption.
type DeviceLists struct {
	Changed []id.UserID `json:"changed,omitempty"`
	Left    []id.UserID `json:"left,omitempty"`
}

// EventList is an {"events": [...]} section.
type EventList struct {
	Events []json.RawMessage `json:"events"`
}

// Rooms holds the per-membership room sections.
type Rooms struct {
	Join   map[id.RoomID]*JoinedRoom  `json:"join"`
	Invite map[id.RoomID]*InvitedRoom `json:"invite"`
	Leave  map[id.RoomID]*LeftRoom    `json:"leave"`
	Knock  map[id.RoomID]*KnockedRoom `json:"knock"`
}

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []room.ClientEvent `json:"events"`
	Limited   bool               `json:"limited"`
	PrevBatch string             `json:"prev_batch,omitempty"`
}

// StateSection is a room's state section.
type StateSection struct {
	Events []room.ClientEvent `json:"events"`
}

// Summary is a room's summary (heroes and member counts).
type Summary struct {
	Heroes             []id.UserID `json:"m.heroes,omitempty"`
	JoinedMemberCount  *int        `json:"m.joined_member_count,omitempty"`
	InvitedMemberCount *int        `json:"m.invited_member_count,omitempty"`
}

// UnreadNotifications are the notification counts of a room.
type UnreadNotifications struct {
	HighlightCount    int `json:"highlight_count"`
	NotificationCount int `json:"notification_count"`
}

// JoinedRoom is one entry of rooms.join.
type JoinedRoom struct {
	Summary Summary `json:"summary"`
	// State is nil, and StateAfter set, when the request had
	// use_state_after (spec v1.16): exactly one of them is sent.
	State               *StateSection       `json:"state,omitempty"`
	StateAfter          *StateSection       `json:"state_after,omitempty"`
	Timeline            Timeline            `json:"timeline"`
	Ephemeral           EventList           `json:"ephemeral"`
	AccountData         EventList           `json:"account_data"`
	UnreadNotifications UnreadNotifications `json:"unread_notifications"`
	// UnreadThreadNotifications holds the counts of each thread with any,
	// when the filter asks for them (UnreadNotifications is then the main
	// timeline's).
	UnreadThreadNotifications map[id.EventID]UnreadNotifications `json:"unread_thread_notifications,omitempty"`

	// section backs State or StateAfter, saving an allocation per room.
	section StateSection
}

// InvitedRoom is one entry of rooms.invite.
type InvitedRoom struct {
	InviteState struct {
		Events []StrippedEvent `json:"events"`
	} `json:"invite_state"`
}

// KnockedRoom is one entry of rooms.knock.
type KnockedRoom struct {
	KnockState struct {
		Events []StrippedEvent `json:"events"`
	} `json:"knock_state"`
}

// StrippedEvent is a stripped state event (invite_state, knock_state).
type StrippedEvent = room.StrippedEvent

// LeftRoom is one entry of rooms.leave.
type LeftRoom struct {
	State       *StateSection `json:"state,omitempty"`
	StateAfter  *StateSection `json:"state_after,omitempty"`
	Timeline    Timeline      `json:"timeline"`
	AccountData EventList     `json:"account_data"`

	section StateSection
}

func newResponse() *Response {
	return &Response{
		Rooms: Rooms{
			Join: map[id.RoomID]*JoinedRoom{}, Invite: map[id.RoomID]*InvitedRoom{},
			Leave: map[id.RoomID]*LeftRoom{}, Knock: map[id.RoomID]*KnockedRoom{},
		},
		AccountData:            EventList{Events: []json.RawMessage{}},
		Presence:               EventList{Events: []json.RawMessage{}},
		ToDevice:               EventList{Events: []json.RawMessage{}},
		OneTimeKeysCount:       map[string]int{},
		UnusedFallbackKeyTypes: []string{},
	}
}

// empty reports whether the response carries nothing new, so a long-poll
// should keep waiting.
func (r *Response) empty() bool {
	return len(r.Rooms.Join) == 0 && len(r.Rooms.Invite) == 0 && len(r.Rooms.Leave) == 0 &&
		len(r.Rooms.Knock) == 0 && len(r.AccountData.Events) == 0 && len(r.Presence.Events) == 0 &&
		len(r.ToDevice.Events) == 0 && len(r.DeviceLists.Changed) == 0 && len(r.DeviceLists.Left) == 0
}
