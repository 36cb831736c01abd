package clientapi

import (
	"net/http"
	"strconv"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// getThreadRoots serves GET /_matrix/client/v1/rooms/{roomId}/threads
// (threads_list.yaml): the roots of the room's threads, the one with the
// latest reply first, each with its bundled m.thread. The from token is
// the position of the latest reply to start at, like a /messages token.
func (a *API) getThreadRoots(w http.ResponseWriter, r *http.Request) error {
	if a.relations == nil {
		return mxerr.Unrecognized.With("threads are not enabled")
	}
	sess := session(r)
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	participant := sess.UserID
	switch q.Get("include") {
	case "", "all":
		participant = ""
	case "participated":
	default:
		return mxerr.InvalidParam.With("include must be all or participated")
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return mxerr.InvalidParam.With("limit must be a positive integer")
		}
		limit = min(n, 100)
	}
	var from int64
	if v := q.Get("from"); v != "" {
		if from, err = parseStreamToken(v); err != nil {
			return err
		}
	}
	acc, err := a.roomAccess(ctx, sess.UserID, roomID)
	if err != nil {
		return err
	}
	if !acc.joined && (from == 0 || from > acc.until) {
		from = acc.until
	}
	roots, more, err := a.relations.ThreadRoots(ctx, roomID, participant, from, limit)
	if err != nil {
		return err
	}
	evs, err := a.loadInOrder(r, roots)
	if err != nil {
		return err
	}
	inRoom := evs[:0]
	for _, ev := range evs {
		if ev.RoomID() == roomID {
			inRoom = append(inRoom, ev)
		}
	}
	chunk := a.rooms.FormatAll(ctx, inRoom, viewer(r), true)
	if chunk == nil {
		chunk = []room.ClientEvent{}
	}
	resp := map[string]any{"chunk": chunk}
	if more && len(roots) > 0 {
		resp["next_batch"] = clientsync.Token{Pos: roots[len(roots)-1].StreamPos - 1}.String()
	}
	return httpx.OK(w, resp)
}
