package clientapi

import (
	"context"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// maxBackfillRounds bounds the backfill requests of one /messages call; a
// page still short after them ends with a token to ask again.
const maxBackfillRounds = 5

// maxPageLimit caps the limit of /messages and /context.
const maxPageLimit = 1000

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
	limit, err := pageLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	acc, err := a.roomAccess(r.Context(), sess.UserID, roomID)
	if err != nil {
		return err
	}
	ef, err := roomEventFilter(q.Get("filter"))
	if err != nil {
		return err
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
	ignored, err := a.accountData.Ignored(r.Context(), sess.UserID)
	if err != nil {
		return err
	}
	pq := pageQuery{roomID: roomID, user: sess.UserID, acc: acc, filter: &ef,
		backwards: dir == "b", from: from, limit: limit, backfill: true, ignored: ignored}
	if v := q.Get("to"); v != "" {
		if pq.to, err = parseStreamToken(v); err != nil {
			return err
		}
		pq.hasTo = true
	}
	if !acc.joined && (dir == "b" && from > acc.until) {
		pq.from = acc.until
	}
	chunk, cursor, more, err := a.timelinePage(r.Context(), pq)
	if err != nil {
		return err
	}
	resp := map[string]any{
		"start": clientsync.Token{Pos: pq.from}.String(),
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
		members := a.senderMembers(r.Context(), st, chunk)
		resp["state"] = a.rooms.FormatAll(r.Context(), members, viewer(r), true)
	}
	return httpx.OK(w, resp)
}

// pageLimit reads the limit parameter of /messages and /context: 10 when
// absent, at most maxPageLimit.
func pageLimit(v string) (int, error) {
	if v == "" {
		return 10, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, mxerr.InvalidParam.With("limit must be a non-negative integer")
	}
	return min(n, maxPageLimit), nil
}

// roomEventFilter reads the filter parameter of /messages and /context: a
// RoomEventFilter as JSON (an empty one when absent).
func roomEventFilter(v string) (clientsync.RoomEventFilter, error) {
	var ef clientsync.RoomEventFilter
	if v != "" {
		if err := httpx.Unmarshal([]byte(v), &ef); err != nil {
			return ef, mxerr.InvalidParam.With("invalid filter")
		}
	}
	return ef, nil
}

// pageQuery asks timelinePage for one page of a room's timeline.
type pageQuery struct {
	roomID id.RoomID
	user   id.UserID
	acc    access
	filter *clientsync.RoomEventFilter
	// backwards pages from newest to oldest, from the events at or below
	// from; forwards from the events above it.
	backwards bool
	from      int64
	// to, when hasTo, bounds the page as /messages' to parameter does.
	to    int64
	hasTo bool
	limit int
	// backfill asks other servers for older history when the page reaches
	// the start of what this server holds.
	backfill bool
	// ignored are the users the user ignores: their non-state events are
	// left out (spec: Ignoring Users).
	ignored map[id.UserID]bool
}

// timelinePage returns up to q.limit events of a room's timeline that the
// user may see and the filter matches, in paging order. The cursor is the
// token to go on from (everything scanned, shown or not, lies on the
// near side of it); more reports that further events may follow.
func (a *API) timelinePage(ctx context.Context, q pageQuery) (chunk []*room.Stored, cursor int64, more bool, err error) {
	cursor, more = q.from, true
	backfills := 0
	for len(chunk) < q.limit && more {
		rg := room.Range{Limit: q.limit - len(chunk) + 1}
		if q.backwards {
			rg.Before, rg.Backwards = cursor+1, true
			if q.hasTo {
				rg.After = q.to
			}
		} else {
			rg.After = cursor
			if q.hasTo {
				rg.Before = q.to + 1
			}
			if !q.acc.joined {
				rg.Before = q.acc.until + 1
			}
		}
		page, err := a.rooms.Timeline(ctx, q.roomID, rg)
		if err != nil {
			return nil, 0, false, err
		}
		more = len(page) == rg.Limit
		if more {
			page = page[:len(page)-1]
		}
		for _, ev := range page {
			if q.backwards {
				cursor = ev.StreamPos - 1
			} else {
				cursor = ev.StreamPos
			}
		}
		visible, err := a.rooms.Visible(ctx, q.user, page)
		if err != nil {
			return nil, 0, false, err
		}
		for _, ev := range visible {
			if q.filter.MatchEvent(ev) && !clientsync.Hides(q.ignored, ev) {
				chunk = append(chunk, ev)
			}
		}
		if !more && q.backwards && !q.hasTo && q.backfill && a.handshake != nil {
			// The start of what we hold: other servers may have more.
			// Ask again each time, until one has nothing further back
			// (the create event is reached).
			if backfills == maxBackfillRounds {
				more = true // the client's next call goes on
				break
			}
			backfills++
			if n, err := a.handshake.Backfill(ctx, q.roomID, q.limit-len(chunk)+1); err != nil {
				a.log.Info("backfill failed", "room_id", q.roomID, "err", err)
			} else if n > 0 {
				more = true
			}
		}
	}
	return chunk, cursor, more, nil
}

// senderMembers returns the member events in st of the senders of evs,
// once each: the state that lazy-loading members sends (client-server
// API, "Lazy-loading room members"). A member event that fails to load
// is left out rather than failing the page.
func (a *API) senderMembers(ctx context.Context, st room.State, evs []*room.Stored) []*room.Stored {
	seen := map[string]bool{}
	var members []*room.Stored
	for _, ev := range evs {
		u := ev.Sender.String()
		if seen[u] {
			continue
		}
		seen[u] = true
		if ref, ok := st[room.StateKeyOf("m.room.member", u)]; ok {
			if mev, err := a.rooms.Event(ctx, ref.ID); err == nil {
				members = append(members, mev)
			}
		}
	}
	return members
}
