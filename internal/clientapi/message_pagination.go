package clientapi

import (
	"net/http"
	"strconv"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// maxBackfillRounds bounds the backfill requests of one /messages call; a
// page still short after them ends with a token to ask again.
const maxBackfillRounds = 5

// getRoomEvents serves GET /_matrix/client/v3/rooms/{roomId}/messages
// (message_pagination.yaml). Tokens are stream positions: a token means
// "after everything at or below this position".
func (a *API) getRoomEvents(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "b" && dir != "f" {
		return mxerr.InvalidParam.With("dir must be b or f")
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return mxerr.InvalidParam.With("limit must be a non-negative integer")
		}
		limit = min(n, 1000)
	}
	acc, err := a.roomAccess(r.Context(), sess.UserID, roomID)
	if err != nil {
		return err
	}
	var ef clientsync.RoomEventFilter
	if fp := q.Get("filter"); fp != "" {
		if err := httpx.Unmarshal([]byte(fp), &ef); err != nil {
			return mxerr.InvalidParam.With("invalid filter")
		}
	}
	var from int64
	if v := q.Get("from"); v != "" {
		if from, err = parseStreamToken(v); err != nil {
			return err
		}
	} else if dir == "b" {
		if from, err = a.syncer.CurrentPosition(r.Context()); err != nil {
			return err
		}
	}
	var to int64
	hasTo := false
	if v := q.Get("to"); v != "" {
		if to, err = parseStreamToken(v); err != nil {
			return err
		}
		hasTo = true
	}
	if !acc.joined && (dir == "b" && from > acc.until) {
		from = acc.until
	}

	var chunk []*room.Stored
	cursor := from
	more := true
	backfills := 0
	for len(chunk) < limit && more {
		rg := room.Range{Limit: limit - len(chunk) + 1}
		if dir == "b" {
			rg.Before, rg.Backwards = cursor+1, true
			if hasTo {
				rg.After = to
			}
		} else {
			rg.After = cursor
			if hasTo {
				rg.Before = to + 1
			}
			if !acc.joined {
				rg.Before = acc.until + 1
			}
		}
		page, err := a.rooms.Timeline(r.Context(), roomID, rg)
		if err != nil {
			return err
		}
		more = len(page) == rg.Limit
		if more {
			page = page[:len(page)-1]
		}
		for _, ev := range page {
			if dir == "b" {
				cursor = ev.StreamPos - 1
			} else {
				cursor = ev.StreamPos
			}
		}
		visible, err := a.rooms.Visible(r.Context(), sess.UserID, page)
		if err != nil {
			return err
		}
		for _, ev := range visible {
			if ef.MatchEvent(ev) {
				chunk = append(chunk, ev)
			}
		}
		if !more && dir == "b" && !hasTo && a.handshake != nil {
			// The start of what we hold: other servers may have more.
			// Ask again each time, until one has nothing further back
			// (the create event is reached).
			if backfills == maxBackfillRounds {
				more = true // the client's next call goes on
				break
			}
			backfills++
			if n, err := a.handshake.Backfill(r.Context(), roomID, limit-len(chunk)+1); err != nil {
				a.log.Info("backfill failed", "room_id", roomID, "err", err)
			} else if n > 0 {
				more = true
			}
		}
	}
	resp := map[string]any{
		"start": clientsync.Token{Pos: from}.String(),
		"chunk": a.rooms.FormatAll(r.Context(), chunk, viewer(r), true),
	}
	if more || (len(chunk) == limit && limit > 0) {
		resp["end"] = clientsync.Token{Pos: cursor}.String()
	}
	if ef.LazyLoadMembers && len(chunk) > 0 {
		st, err := a.rooms.StateAt(r.Context(), chunk[0], false)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		var members []*room.Stored
		for _, ev := range chunk {
			u := ev.Sender.String()
			if seen[u] {
				continue
			}
			seen[u] = true
			if ref, ok := st[room.StateKeyOf("m.room.member", u)]; ok {
				if mev, err := a.rooms.Event(r.Context(), ref.ID); err == nil {
					members = append(members, mev)
				}
			}
		}
		resp["state"] = a.rooms.FormatAll(r.Context(), members, viewer(r), true)
	}
	return httpx.OK(w, resp)
}
