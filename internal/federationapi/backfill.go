package federationapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// maxBackfill caps the events of one backfill or get_missing_events answer.
const maxBackfill = 100

// backfillRoom handles GET /_matrix/federation/v1/backfill/{roomId}
// (backfill.yaml): history before (and including) the ?v events.
func (a *API) backfillRoom(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	if err := a.roomForOrigin(ctx, roomID, Origin(ctx)); err != nil {
		return err
	}
	q := r.URL.Query()
	var from []id.EventID
	for _, v := range q["v"] {
		from = append(from, id.EventID(v))
	}
	if len(from) == 0 {
		return mxerr.MissingParam.With("v is required")
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		return mxerr.InvalidParam.With("limit must be a positive integer")
	}
	evs, err := a.rooms.Backfill(ctx, roomID, from, min(limit, maxBackfill))
	if err != nil {
		return err
	}
	pdus, err := a.forServer(ctx, Origin(ctx), evs)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"origin": a.serverName, "origin_server_ts": time.Now().UnixMilli(), "pdus": pdus})
}

// getMissingEventsReq is the body of POST /get_missing_events.
type getMissingEventsReq struct {
	EarliestEvents []id.EventID `json:"earliest_events"`
	LatestEvents   []id.EventID `json:"latest_events"`
	Limit          *int         `json:"limit"`
	MinDepth       int64        `json:"min_depth"`
}

// getMissingPreviousEvents handles POST /_matrix/federation/v1/get_missing_events/{roomId}
// (backfill.yaml).
func (a *API) getMissingPreviousEvents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	if err := a.roomForOrigin(ctx, roomID, Origin(ctx)); err != nil {
		return err
	}
	var req getMissingEventsReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	limit := 10
	if req.Limit != nil {
		limit = *req.Limit
	}
	if limit <= 0 {
		return mxerr.InvalidParam.With("limit must be positive")
	}
	evs, err := a.rooms.MissingEvents(ctx, roomID, req.EarliestEvents, req.LatestEvents, min(limit, maxBackfill), req.MinDepth)
	if err != nil {
		return err
	}
	pdus, err := a.forServer(ctx, Origin(ctx), evs)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"events": pdus})
}

// forServer returns the federation form of evs as server may see them
// under the room's history visibility: an event it may not see goes as
// its redacted copy, which keeps the DAG whole while hiding the content
// (as Synapse does, and as Complement expects of /get_missing_events).
func (a *API) forServer(ctx context.Context, server string, evs []*room.Stored) ([]json.RawMessage, error) {
	ok, err := a.rooms.ServerCanSee(ctx, server, evs)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(evs))
	for i, e := range evs {
		if ok[i] {
			out[i] = e.JSON()
		} else {
			out[i] = e.Redacted().JSON()
		}
	}
	return out, nil
}
