package federationapi

import (
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// visibleEvent loads an event of roomID (any room when roomID is empty)
// that the requesting server may see.
func (a *API) visibleEvent(r *http.Request, roomID id.RoomID, evID id.EventID) (*room.Stored, error) {
	ctx := r.Context()
	ev, err := a.rooms.Event(ctx, evID)
	if err != nil {
		return nil, err
	}
	if roomID != "" && ev.RoomID() != roomID {
		return nil, mxerr.NotFound.With("event not found in this room")
	}
	if err := a.roomForOrigin(ctx, ev.RoomID(), Origin(ctx)); err != nil {
		return nil, err
	}
	return ev, nil
}

// getEvent handles GET /_matrix/federation/v1/event/{eventId} (events.yaml).
func (a *API) getEvent(w http.ResponseWriter, r *http.Request) error {
	ev, err := a.visibleEvent(r, "", id.EventID(r.PathValue("eventId")))
	if err != nil {
		return err
	}
	pdus, err := a.forServer(r.Context(), Origin(r.Context()), []*room.Stored{ev})
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{
		"origin": a.serverName, "origin_server_ts": time.Now().UnixMilli(),
		"pdus": pdus,
	})
}

// stateAt loads the state before the event named by ?event_id and its
// auth chain.
func (a *API) stateAt(r *http.Request) (state, chain []*room.Stored, err error) {
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, nil, err
	}
	evID := r.URL.Query().Get("event_id")
	if evID == "" {
		return nil, nil, mxerr.MissingParam.With("event_id is required")
	}
	ev, err := a.visibleEvent(r, roomID, id.EventID(evID))
	if err != nil {
		return nil, nil, err
	}
	if ev.Outlier {
		return nil, nil, mxerr.NotFound.With("this server does not know the state at that event")
	}
	st, err := a.rooms.StateAt(r.Context(), ev, false)
	if err != nil {
		return nil, nil, err
	}
	if state, err = a.rooms.StateEvents(r.Context(), st); err != nil {
		return nil, nil, err
	}
	ids := make([]id.EventID, 0, len(state))
	for _, s := range state {
		ids = append(ids, s.ID)
	}
	chain, err = a.rooms.AuthChain(r.Context(), ids)
	return state, chain, err
}

// getRoomState handles GET /_matrix/federation/v1/state/{roomId} (events.yaml).
func (a *API) getRoomState(w http.ResponseWriter, r *http.Request) error {
	state, chain, err := a.stateAt(r)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"pdus": jsonOf(state), "auth_chain": jsonOf(chain)})
}

// getRoomStateIds handles GET /_matrix/federation/v1/state_ids/{roomId} (events.yaml).
func (a *API) getRoomStateIds(w http.ResponseWriter, r *http.Request) error {
	state, chain, err := a.stateAt(r)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"pdu_ids": idsOf(state), "auth_chain_ids": idsOf(chain)})
}

// getEventAuth handles GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
// (event_auth.yaml).
func (a *API) getEventAuth(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	ev, err := a.visibleEvent(r, roomID, id.EventID(r.PathValue("eventId")))
	if err != nil {
		return err
	}
	chain, err := a.rooms.AuthChain(r.Context(), []id.EventID{ev.ID})
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"auth_chain": jsonOf(chain)})
}

func idsOf(evs []*room.Stored) []id.EventID {
	out := make([]id.EventID, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

// getEventByTimestamp handles GET /_matrix/federation/v1/timestamp_to_event/{roomId}
// (events.yaml): the event closest to ?ts in the direction ?dir among
// those held here. It never asks further servers, so two servers with the
// same gap cannot ask each other in a loop.
func (a *API) getEventByTimestamp(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	rawTS, dir := q.Get("ts"), q.Get("dir")
	if rawTS == "" || dir == "" {
		return mxerr.MissingParam.With("ts and dir are required")
	}
	ts, err := strconv.ParseInt(rawTS, 10, 64)
	if err != nil {
		return mxerr.InvalidParam.With("ts must be an integer")
	}
	if dir != "f" && dir != "b" {
		return mxerr.InvalidParam.With("dir must be f or b")
	}
	if err := a.roomForOrigin(ctx, roomID, Origin(ctx)); err != nil {
		return err
	}
	ev, _, err := a.rooms.EventAtTimestamp(ctx, roomID, ts, dir == "f", 0)
	if err != nil {
		return err
	}
	if ev == nil {
		return mxerr.NotFound.With("unable to find an event from %d in direction %s", ts, dir)
	}
	return httpx.OK(w, map[string]any{"event_id": ev.ID, "origin_server_ts": ev.OriginServerTS})
}
