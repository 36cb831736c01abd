package search

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"
)

// maxRoomsInQuery is how many rooms a query names; a user in more rooms
// has the rooms checked after the query instead (as Synapse does), which
// keeps the statement's parameters bounded.
const maxRoomsInQuery = 500

// roomBound is a room the user may search and the last stream position
// they may see there (0: no bound, they are still joined).
type roomBound struct {
	room  id.RoomID
	until int64
}

// find is one index query.
type find struct {
	query  string // rendered by storage.FullText.Query
	types  []string
	rooms  []roomBound // only when at most maxRoomsInQuery
	sender id.UserID   // "": any
	recent bool
	// after, for recent order, is the (origin_server_ts, event_nid) of the
	// last row of the previous page; offset, for rank order, the rows
	// before the page.
	after  *cursor
	offset int
	limit  int
}

// cursor is a row's place in recent order.
type cursor struct{ ts, nid int64 }

// hitRow is one row an index query found.
type hitRow struct {
	eventID id.EventID
	cur     cursor
	rank    float64
}

// where returns the conditions of q (without the page bound) and their
// arguments, $1 being the query.
func (ix *Index) where(q find) (string, []any) {
	args := []any{q.query}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	conds := []string{ix.ft.Match("s", "$1")}
	var types []string
	for _, t := range q.types {
		types = append(types, arg(t))
	}
	conds = append(conds, "e.type IN ("+strings.Join(types, ", ")+")")
	if q.rooms != nil {
		var joined, alts []string
		for _, r := range q.rooms {
			if r.until == 0 {
				joined = append(joined, arg(r.room.String()))
			} else {
				alts = append(alts, "(e.room_id = "+arg(r.room.String())+" AND e.stream_pos <= "+arg(r.until)+")")
			}
		}
		if len(joined) > 0 {
			alts = append(alts, "e.room_id IN ("+strings.Join(joined, ", ")+")")
		}
		conds = append(conds, "("+strings.Join(alts, " OR ")+")")
	}
	if q.sender != "" {
		conds = append(conds, "e.sender = "+arg(q.sender.String()))
	}
	return strings.Join(conds, " AND "), args
}

// find runs an index query: the matching events in the order asked.
func (ix *Index) find(ctx context.Context, q find) ([]hitRow, error) {
	where, args := ix.where(q)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	order := "relevance DESC, e.origin_server_ts DESC, e.event_nid DESC"
	if q.recent {
		order = "e.origin_server_ts DESC, e.event_nid DESC"
		if q.after != nil {
			ts := arg(q.after.ts)
			where += " AND (e.origin_server_ts < " + ts + " OR (e.origin_server_ts = " + ts + " AND e.event_nid < " + arg(q.after.nid) + "))"
		}
	}
	sql := `SELECT e.event_id, e.origin_server_ts, e.event_nid, ` + ix.ft.Rank("s", "$1") + ` AS relevance
		FROM event_search s JOIN events e ON e.event_nid = ` + ix.ft.Key("s") + `
		WHERE ` + where + ` ORDER BY ` + order + ` LIMIT ` + arg(q.limit) + ` OFFSET ` + arg(q.offset)
	rows, err := ix.db.QueryContext(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("searching events: %w", err)
	}
	defer rows.Close()
	var out []hitRow
	for rows.Next() {
		var h hitRow
		var evID string
		if err := rows.Scan(&evID, &h.cur.ts, &h.cur.nid, &h.rank); err != nil {
			return nil, fmt.Errorf("searching events: %w", err)
		}
		h.eventID = id.EventID(evID)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("searching events: %w", err)
	}
	return out, nil
}

// count returns how many events match q in each room (the page bound of
// q does not apply).
func (ix *Index) count(ctx context.Context, q find) (map[id.RoomID]int, error) {
	where, args := ix.where(q)
	rows, err := ix.db.QueryContext(ctx, `SELECT e.room_id, COUNT(*) FROM event_search s JOIN events e ON e.event_nid = `+ix.ft.Key("s")+`
		WHERE `+where+` GROUP BY e.room_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("counting search results: %w", err)
	}
	defer rows.Close()
	out := map[id.RoomID]int{}
	for rows.Next() {
		var r string
		var n int
		if err := rows.Scan(&r, &n); err != nil {
			return nil, fmt.Errorf("counting search results: %w", err)
		}
		out[id.RoomID(r)] = n
	}
	return out, rows.Err()
}
