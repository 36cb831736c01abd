package slidingsync

import (
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/room"
)

// Resp is a sliding sync response.
type Resp struct {
	TxnID      string                  `json:"txn_id,omitempty"`
	Pos        string                  `json:"pos"`
	Lists      map[string]ListResp     `json:"lists"`
	Rooms      map[id.RoomID]*RoomResp `json:"rooms"`
	Extensions ExtensionsResp          `json:"extensions"`
}

// ListResp is what a response says of a list: how many rooms it holds.
type ListResp struct {
	Count int `json:"count"`
}

// RoomResp is one room of a response. A room the connection has already
// been sent carries only what changed since (initial unset).
type RoomResp struct {
	Name       string  `json:"name,omitempty"`
	Avatar     *string `json:"avatar,omitempty"`
	Heroes     []Hero  `json:"heroes,omitempty"`
	Initial    bool    `json:"initial,omitempty"`
	Membership string  `json:"membership,omitempty"`
	// Lists names the lists whose windows hold the room.
	Lists []string `json:"lists,omitempty"`
	// ExpandedTimeline marks a timeline resent longer because the
	// timeline limit grew; clients read the unstable name.
	ExpandedTimeline         bool                       `json:"expanded_timeline,omitempty"`
	UnstableExpandedTimeline bool                       `json:"unstable_expanded_timeline,omitempty"`
	IsDM                     bool                       `json:"is_dm,omitempty"`
	InviteState              []clientsync.StrippedEvent `json:"invite_state,omitempty"`
	KnockState               []clientsync.StrippedEvent `json:"knock_state,omitempty"`
	RequiredState            []room.ClientEvent         `json:"required_state,omitempty"`
	Timeline                 []room.ClientEvent         `json:"timeline,omitempty"`
	PrevBatch                string                     `json:"prev_batch,omitempty"`
	Limited                  bool                       `json:"limited,omitempty"`
	NumLive                  *int                       `json:"num_live,omitempty"`
	BumpStamp                *int64                     `json:"bump_stamp,omitempty"`
	JoinedCount              *int                       `json:"joined_count,omitempty"`
	InvitedCount             *int                       `json:"invited_count,omitempty"`
	// The counts of unread notifications, from push rule evaluation
	// (internal/notifications, as /sync): sent with a room's first entry
	// and whenever they change.
	NotificationCount *int `json:"notification_count,omitempty"`
	HighlightCount    *int `json:"highlight_count,omitempty"`
}

// Hero is a member a client may name an unnamed room after.
type Hero struct {
	UserID      id.UserID `json:"user_id"`
	DisplayName string    `json:"displayname,omitempty"`
	AvatarURL   string    `json:"avatar_url,omitempty"`
}

// ExtensionsResp holds the extensions' answers; an extension not enabled
// is left out.
type ExtensionsResp struct {
	ToDevice    *ToDeviceResp    `json:"to_device,omitempty"`
	E2EE        *E2EEResp        `json:"e2ee,omitempty"`
	AccountData *AccountDataResp `json:"account_data,omitempty"`
	Receipts    *RoomEventsResp  `json:"receipts,omitempty"`
	Typing      *RoomEventsResp  `json:"typing,omitempty"`
}

// ToDeviceResp is the to-device extension's answer: next_batch goes in
// the next request's since.
type ToDeviceResp struct {
	NextBatch string            `json:"next_batch"`
	Events    []json.RawMessage `json:"events"`
}

// E2EEResp is the e2ee extension's answer, as the /sync sections of the
// same names.
type E2EEResp struct {
	DeviceLists struct {
		Changed []id.UserID `json:"changed,omitempty"`
		Left    []id.UserID `json:"left,omitempty"`
	} `json:"device_lists"`
	OneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	UnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

// AccountDataResp is the account data extension's answer.
type AccountDataResp struct {
	Global []json.RawMessage               `json:"global,omitempty"`
	Rooms  map[id.RoomID][]json.RawMessage `json:"rooms,omitempty"`
}

// RoomEventsResp is the receipts or typing extension's answer: one event
// per room.
type RoomEventsResp struct {
	Rooms map[id.RoomID]json.RawMessage `json:"rooms,omitempty"`
}
