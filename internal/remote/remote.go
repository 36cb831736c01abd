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
// Besides the events that pass their checks it returns the IDs of those
// that did not (where an ID can be worked out), so the caller does not
// ask for them again.
func (f *Fetcher) GetMissingEvents(ctx context.Context, server string, roomID id.RoomID, v id.RoomVersion, earliest, latest []id.EventID, limit int) ([]*pdu.Event, []id.EventID, error) {
	req := map[string]any{"earliest_events": nonNil(earliest), "latest_events": nonNil(latest), "limit": limit, "min_depth": 0}
	var resp struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := f.client.Do(ctx, server, http.MethodPost, "/_matrix/federation/v1/get_missing_events/"+url.PathEscape(roomID.String()), nil, req, &resp); err != nil {
		return nil, nil, fmt.Errorf("get_missing_events from %s: %w", server, err)
	}
	good := f.checkAll(ctx, v, resp.Events)
	if len(good) == len(resp.Events) {
		return good, nil, nil
	}
	ok := make(map[id.EventID]bool, len(good))
	for _, e := range good {
		ok[e.ID] = true
	}
	var bad []id.EventID
	for _, raw := range resp.Events {
		if e, err := pdu.Parse(v, raw); err == nil && !ok[e.ID] {
			bad = append(bad, e.ID)
		}
	}
	return good, bad, nil
}

// GetStateIDs calls GET /_matrix/federation/v1/state_ids/{roomId}: the
// IDs of the state before evID and of its auth chain.
func (f *Fetcher) GetStateIDs(ctx context.Context, server string, roomID id.RoomID, evID id.EventID) (state, authChain []id.EventID, err error) {
	var resp struct {
		AuthChainIDs []id.EventID `json:"auth_chain_ids"`
		PDUIDs       []id.EventID `json:"pdu_ids"`
	}
	q := url.Values{"event_id": {evID.String()}}
	if err := f.client.Do(ctx, server, http.MethodGet, "/_matrix/federation/v1/state_ids/"+url.PathEscape(roomID.String()), q, nil, &resp); err != nil {
		return nil, nil, fmt.Errorf("state_ids from %s: %w", server, err)
	}
	return resp.PDUIDs, resp.AuthChainIDs, nil
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
