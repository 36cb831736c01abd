package clientapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// getEventByTimestamp serves GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event
// (room_event_by_timestamp.yaml): the event closest to ?ts in the
// direction ?dir. The caller must be in the room (or have been: then only
// events up to their departure count) or the room must be world readable,
// and the event found must be visible to them (room.CanSee).
// When the history held here has a gap next to the closest local event,
// or there is none, the room's other servers are asked, as Synapse does.
func (a *API) getEventByTimestamp(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	ts, forward, err := timestampQuery(r.URL.Query())
	if err != nil {
		return err
	}
	acc, err := a.roomAccess(ctx, session(r).UserID, roomID)
	if err != nil {
		return err
	}
	var maxPos int64
	if !acc.joined {
		maxPos = acc.until
	}
	found, gap, err := a.rooms.EventAtTimestamp(ctx, roomID, ts, forward, maxPos)
	if err != nil {
		return err
	}
	// A departed user's view ends at their leave, and an event fetched now
	// cannot be placed against it: only members (and readers of a
	// world-readable room) get other servers' answers.
	if (found == nil || gap) && acc.joined && a.handshake != nil {
		remote, err := a.handshake.EventAtTimestamp(ctx, roomID, ts, forward, found)
		if err != nil {
			a.log.Info("asking other servers for the event at a timestamp failed", "room_id", roomID, "err", err)
		} else if remote != nil {
			found = remote
		}
	}
	notFound := mxerr.NotFound.With("unable to find an event from %d in direction %s", ts, map[bool]string{true: "f", false: "b"}[forward])
	if found == nil {
		return notFound
	}
	// The answer names an event: history visibility applies as to reading
	// it, and an event the user may not see is as no event.
	if ok, err := a.rooms.CanSee(ctx, session(r).UserID, []*room.Stored{found}); err != nil {
		return err
	} else if !ok[0] {
		return notFound
	}
	return httpx.OK(w, map[string]any{"event_id": found.ID, "origin_server_ts": found.OriginServerTS})
}

// timestampQuery parses the ts and dir parameters of timestamp_to_event.
func timestampQuery(q url.Values) (ts int64, forward bool, err error) {
	rawTS, dir := q.Get("ts"), q.Get("dir")
	if rawTS == "" {
		return 0, false, mxerr.MissingParam.With("ts is required")
	}
	if ts, err = strconv.ParseInt(rawTS, 10, 64); err != nil {
		return 0, false, mxerr.InvalidParam.With("ts must be an integer")
	}
	switch dir {
	case "":
		return 0, false, mxerr.MissingParam.With("dir is required")
	case "f", "b":
		return ts, dir == "f", nil
	default:
		return 0, false, mxerr.InvalidParam.With("dir must be f or b")
	}
}
