// Package remote fetches events and state from other servers for the room
// service (room.Remote): the pull side of federation used to fill gaps in
// a room's DAG. Every event fetched passes pducheck before room sees it.
//
// remote imports pdu and pducheck; it reaches other servers through a Doer
// (the federation client).
package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/pducheck"
)

// Doer sends one signed federation request and decodes the JSON answer.
// path is the escaped request path.
type Doer interface {
	Do(ctx context.Context, dest, method, path string, query url.Values, body, out any) error
}

// Fetcher implements room.Remote.
type Fetcher struct {
	client  Doer
	checker *pducheck.Checker
}

// New returns a Fetcher.
func New(client Doer, checker *pducheck.Checker) *Fetcher {
	return &Fetcher{client: client, checker: checker}
}

func (f *Fetcher) checkAll(ctx context.Context, v id.RoomVersion, raws []json.RawMessage) []*pdu.Event {
	return f.checker.CheckAll(ctx, v, raws)
}

// GetMissingEvents calls POST /_matrix/federation/v1/get_missing_events/{roomId}.
func (f *Fetcher) GetMissingEvents(ctx context.Context, server string, roomID id.RoomID, v id.RoomVersion, earliest, latest []id.EventID, limit int) ([]*pdu.Event, error) {
	req := map[string]any{"earliest_events": nonNil(earliest), "latest_events": nonNil(latest), "limit": limit, "min_depth": 0}
	var resp struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := f.client.Do(ctx, server, http.MethodPost, "/_matrix/federation/v1/get_missing_events/"+url.PathEscape(roomID.String()), nil, req, &resp); err != nil {
		return nil, fmt.Errorf("get_missing_events from %s: %w", server, err)
	}
	return f.checkAll(ctx, v, resp.Events), nil
}

// GetState calls GET /_matrix/federation/v1/state/{roomId}.
func (f *Fetcher) GetState(ctx context.Context, server string, roomID id.RoomID, v id.RoomVersion, evID id.EventID) ([]*pdu.Event, []*pdu.Event, error) {
	var resp struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
		PDUs      []json.RawMessage `json:"pdus"`
	}
	q := url.Values{"event_id": {evID.String()}}
	if err := f.client.Do(ctx, server, http.MethodGet, "/_matrix/federation/v1/state/"+url.PathEscape(roomID.String()), q, nil, &resp); err != nil {
		return nil, nil, fmt.Errorf("state from %s: %w", server, err)
	}
	return f.checkAll(ctx, v, resp.PDUs), f.checkAll(ctx, v, resp.AuthChain), nil
}

// GetEventAuth calls GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}.
func (f *Fetcher) GetEventAuth(ctx context.Context, server string, roomID id.RoomID, v id.RoomVersion, evID id.EventID) ([]*pdu.Event, error) {
	var resp struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	path := "/_matrix/federation/v1/event_auth/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(evID.String())
	if err := f.client.Do(ctx, server, http.MethodGet, path, nil, nil, &resp); err != nil {
		return nil, fmt.Errorf("event_auth from %s: %w", server, err)
	}
	return f.checkAll(ctx, v, resp.AuthChain), nil
}

// GetEvent calls GET /_matrix/federation/v1/event/{eventId}.
func (f *Fetcher) GetEvent(ctx context.Context, server string, v id.RoomVersion, evID id.EventID) (*pdu.Event, error) {
	var resp struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	if err := f.client.Do(ctx, server, http.MethodGet, "/_matrix/federation/v1/event/"+url.PathEscape(evID.String()), nil, nil, &resp); err != nil {
		return nil, fmt.Errorf("event from %s: %w", server, err)
	}
	if len(resp.PDUs) != 1 {
		return nil, fmt.Errorf("event from %s: %d PDUs in the answer", server, len(resp.PDUs))
	}
	ev, err := f.checker.Check(ctx, v, resp.PDUs[0])
	if err != nil {
		return nil, fmt.Errorf("event %s from %s: %w", evID, server, err)
	}
	if ev.ID != evID {
		return nil, fmt.Errorf("asked %s for %s, got %s", server, evID, ev.ID)
	}
	return ev, nil
}

func nonNil(ids []id.EventID) []id.EventID {
	if ids == nil {
		return []id.EventID{}
	}
	return ids
}
