package fedclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/keys"
)

// PDUs travel as json.RawMessage: their format depends on the room version,
// which the caller knows and parses with package pdu.

// TransactionReq is the body of PUT /_matrix/federation/v1/send/{txnId}.
type TransactionReq struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []json.RawMessage `json:"edus,omitempty"`
}

// TransactionResp maps each PDU's event ID to its processing result.
type TransactionResp struct {
	PDUs map[id.EventID]PDUResult `json:"pdus"`
}

// PDUResult is the outcome of one PDU of a transaction; Error is empty on
// success.
type PDUResult struct {
	Error string `json:"error,omitempty"`
}

// MakeMembershipResp answers make_join, make_leave and make_knock: an
// event template to sign and the room version.
type MakeMembershipResp struct {
	Event       json.RawMessage `json:"event"`
	RoomVersion id.RoomVersion  `json:"room_version"`
}

// SendJoinResp answers PUT /_matrix/federation/v2/send_join.
type SendJoinResp struct {
	Origin         string            `json:"origin"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	State          []json.RawMessage `json:"state"`
	Event          json.RawMessage   `json:"event,omitempty"`
	MembersOmitted bool              `json:"members_omitted,omitempty"`
	ServersInRoom  []string          `json:"servers_in_room,omitempty"`
}

// InviteReq is the body of PUT /_matrix/federation/v2/invite.
type InviteReq struct {
	Event           json.RawMessage   `json:"event"`
	InviteRoomState []json.RawMessage `json:"invite_room_state,omitempty"`
	RoomVersion     id.RoomVersion    `json:"room_version"`
}

// SendKnockResp answers PUT /_matrix/federation/v1/send_knock.
type SendKnockResp struct {
	KnockRoomState []json.RawMessage `json:"knock_room_state"`
}

// PDUsResp is a transaction-shaped answer (event, backfill).
type PDUsResp struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
}

// StateIDsResp answers GET /_matrix/federation/v1/state_ids.
type StateIDsResp struct {
	AuthChainIDs []id.EventID `json:"auth_chain_ids"`
	PDUIDs       []id.EventID `json:"pdu_ids"`
}

// StateResp answers GET /_matrix/federation/v1/state.
type StateResp struct {
	AuthChain []json.RawMessage `json:"auth_chain"`
	PDUs      []json.RawMessage `json:"pdus"`
}

// MissingEventsReq is the body of POST /_matrix/federation/v1/get_missing_events.
type MissingEventsReq struct {
	EarliestEvents []id.EventID `json:"earliest_events"`
	LatestEvents   []id.EventID `json:"latest_events"`
	Limit          int          `json:"limit,omitempty"`
	MinDepth       int64        `json:"min_depth,omitempty"`
}

// DirectoryResp answers GET /_matrix/federation/v1/query/directory.
type DirectoryResp struct {
	RoomID  id.RoomID `json:"room_id"`
	Servers []string  `json:"servers"`
}

func fed(segments ...string) string {
	p := "/_matrix/federation"
	for _, s := range segments {
		p += "/" + url.PathEscape(s)
	}
	return p
}

func versions(vs []id.RoomVersion) url.Values {
	q := url.Values{}
	for _, v := range vs {
		q.Add("ver", string(v))
	}
	return q
}

// SendTransaction is PUT /_matrix/federation/v1/send/{txnId}. An empty
// Origin is filled with our server name.
func (c *Client) SendTransaction(ctx context.Context, dest, txnID string, txn TransactionReq) (TransactionResp, error) {
	if txn.Origin == "" {
		txn.Origin = c.serverName
	}
	if txn.PDUs == nil {
		txn.PDUs = []json.RawMessage{}
	}
	var resp TransactionResp
	err := c.Do(ctx, dest, http.MethodPut, fed("v1", "send", txnID), nil, txn, &resp)
	return resp, err
}

// MakeJoin is GET /_matrix/federation/v1/make_join/{roomId}/{userId},
// offering the room versions we support.
func (c *Client) MakeJoin(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID, supported []id.RoomVersion) (MakeMembershipResp, error) {
	var resp MakeMembershipResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "make_join", string(roomID), string(userID)), versions(supported), nil, &resp)
	return resp, err
}

// SendJoin is PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}.
// omitMembers asks for a partial state answer (MSC3706).
func (c *Client) SendJoin(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage, omitMembers bool) (SendJoinResp, error) {
	var q url.Values
	if omitMembers {
		q = url.Values{"omit_members": {"true"}}
	}
	var resp SendJoinResp
	err := c.Do(ctx, dest, http.MethodPut, fed("v2", "send_join", string(roomID), string(eventID)), q, event, &resp)
	return resp, err
}

// MakeLeave is GET /_matrix/federation/v1/make_leave/{roomId}/{userId}.
func (c *Client) MakeLeave(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID) (MakeMembershipResp, error) {
	var resp MakeMembershipResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "make_leave", string(roomID), string(userID)), nil, nil, &resp)
	return resp, err
}

// SendLeave is PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}.
func (c *Client) SendLeave(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage) error {
	return c.Do(ctx, dest, http.MethodPut, fed("v2", "send_leave", string(roomID), string(eventID)), nil, event, nil)
}

// SendInvite is PUT /_matrix/federation/v2/invite/{roomId}/{eventId}. It
// returns the invite event as signed by the invitee's server.
func (c *Client) SendInvite(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, req InviteReq) (json.RawMessage, error) {
	var resp struct {
		Event json.RawMessage `json:"event"`
	}
	err := c.Do(ctx, dest, http.MethodPut, fed("v2", "invite", string(roomID), string(eventID)), nil, req, &resp)
	return resp.Event, err
}

// MakeKnock is GET /_matrix/federation/v1/make_knock/{roomId}/{userId}.
func (c *Client) MakeKnock(ctx context.Context, dest string, roomID id.RoomID, userID id.UserID, supported []id.RoomVersion) (MakeMembershipResp, error) {
	var resp MakeMembershipResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "make_knock", string(roomID), string(userID)), versions(supported), nil, &resp)
	return resp, err
}

// SendKnock is PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}.
func (c *Client) SendKnock(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID, event json.RawMessage) (SendKnockResp, error) {
	var resp SendKnockResp
	err := c.Do(ctx, dest, http.MethodPut, fed("v1", "send_knock", string(roomID), string(eventID)), nil, event, &resp)
	return resp, err
}

// GetEvent is GET /_matrix/federation/v1/event/{eventId}.
func (c *Client) GetEvent(ctx context.Context, dest string, eventID id.EventID) (PDUsResp, error) {
	var resp PDUsResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "event", string(eventID)), nil, nil, &resp)
	return resp, err
}

// GetStateIDs is GET /_matrix/federation/v1/state_ids/{roomId}: the state
// before eventID.
func (c *Client) GetStateIDs(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) (StateIDsResp, error) {
	var resp StateIDsResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "state_ids", string(roomID)), url.Values{"event_id": {string(eventID)}}, nil, &resp)
	return resp, err
}

// GetState is GET /_matrix/federation/v1/state/{roomId}: the state before
// eventID with its auth chain.
func (c *Client) GetState(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) (StateResp, error) {
	var resp StateResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "state", string(roomID)), url.Values{"event_id": {string(eventID)}}, nil, &resp)
	return resp, err
}

// GetEventAuth is GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}:
// the event's full auth chain.
func (c *Client) GetEventAuth(ctx context.Context, dest string, roomID id.RoomID, eventID id.EventID) ([]json.RawMessage, error) {
	var resp struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "event_auth", string(roomID), string(eventID)), nil, nil, &resp)
	return resp.AuthChain, err
}

// Backfill is GET /_matrix/federation/v1/backfill/{roomId}: up to limit
// events preceding from.
func (c *Client) Backfill(ctx context.Context, dest string, roomID id.RoomID, from []id.EventID, limit int) (PDUsResp, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	for _, e := range from {
		q.Add("v", string(e))
	}
	var resp PDUsResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "backfill", string(roomID)), q, nil, &resp)
	return resp, err
}

// GetMissingEvents is POST /_matrix/federation/v1/get_missing_events/{roomId}.
func (c *Client) GetMissingEvents(ctx context.Context, dest string, roomID id.RoomID, req MissingEventsReq) ([]json.RawMessage, error) {
	if req.EarliestEvents == nil {
		req.EarliestEvents = []id.EventID{}
	}
	var resp struct {
		Events []json.RawMessage `json:"events"`
	}
	err := c.Do(ctx, dest, http.MethodPost, fed("v1", "get_missing_events", string(roomID)), nil, req, &resp)
	return resp.Events, err
}

// QueryDirectory is GET /_matrix/federation/v1/query/directory.
func (c *Client) QueryDirectory(ctx context.Context, dest string, alias id.RoomAlias) (DirectoryResp, error) {
	var resp DirectoryResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "query", "directory"), url.Values{"room_alias": {string(alias)}}, nil, &resp)
	return resp, err
}

// QueryProfile is GET /_matrix/federation/v1/query/profile; field is
// "displayname", "avatar_url" or "" for the whole profile.
func (c *Client) QueryProfile(ctx context.Context, dest string, userID id.UserID, field string) (map[string]any, error) {
	q := url.Values{"user_id": {string(userID)}}
	if field != "" {
		q.Set("field", field)
	}
	var resp map[string]any
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "query", "profile"), q, nil, &resp)
	return resp, err
}

// ServerKeys is GET /_matrix/key/v2/server on server, returned raw so that
// its signatures can be checked (keys.Fetcher).
func (c *Client) ServerKeys(ctx context.Context, server string) (json.RawMessage, error) {
	return c.do(ctx, server, http.MethodGet, "/_matrix/key/v2/server", nil, nil)
}

// QueryKeys is POST /_matrix/key/v2/query on a notary (keys.Fetcher).
func (c *Client) QueryKeys(ctx context.Context, notary string, req keys.QueryReq) (keys.QueryResp, error) {
	var resp keys.QueryResp
	err := c.Do(ctx, notary, http.MethodPost, "/_matrix/key/v2/query", nil, req, &resp)
	return resp, err
}

var _ keys.Fetcher = (*Client)(nil)

// SpaceHierarchyResp answers GET /_matrix/federation/v1/hierarchy/{roomId}
// (space_hierarchy.yaml). The room summaries stay raw: they come from
// another server, and the caller checks each one before using it.
type SpaceHierarchyResp struct {
	Room                 json.RawMessage   `json:"room"`
	Children             []json.RawMessage `json:"children"`
	InaccessibleChildren []id.RoomID       `json:"inaccessible_children"`
}

// GetSpaceHierarchy is GET /_matrix/federation/v1/hierarchy/{roomId}.
func (c *Client) GetSpaceHierarchy(ctx context.Context, dest string, roomID id.RoomID, suggestedOnly bool) (SpaceHierarchyResp, error) {
	var resp SpaceHierarchyResp
	err := c.Do(ctx, dest, http.MethodGet, fed("v1", "hierarchy", roomID.String()), url.Values{"suggested_only": {strconv.FormatBool(suggestedOnly)}}, nil, &resp)
	return resp, err
}
