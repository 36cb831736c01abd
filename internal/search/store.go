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

// rankWindow is how many of the newest matches rank order ranks. Ranking
// reads every match it orders, so a common word over years of history
// would cost a read per message; instead the most relevant of the newest
// matches come first, favouring recent relevant messages. A word with
// fewer matches is ranked over all of them.
const rankWindow = 10000

// countSample is how many of the newest matches count reads to learn
// which share of the matches lies in the rooms searched; count is exact
// below it and an estimate above (which the spec allows).
const countSample = 2000

// countExactBelow is the planner's estimate of the matches under which
// PostgreSQL counts them exactly.
const countExactBelow = 5000

// roomBound is a room the user may search and the event_nid of the last
// event they may see there (0: no bound, they are still joined).
type roomBound struct {
	room     id.RoomID
	untilNID int64
}

// find is one index query.
type find struct {
	query string // rendered by storage.FullText.Query
	// fields, when set, are the keys searched (nil: all of them, which
	// needs no condition).
	fields []string
	rooms  []roomBound // only when at most maxRoomsInQuery
	sender id.UserID   // "": any
	recent bool
	// before, for recent order, is the event_nid of the last row of the
	// previous page; offset, for rank order, the rows before the page.
	before int64
	offset int
	limit  int
}

// hitRow is one row an index query found.
type hitRow struct {
	eventID id.EventID
	nid     int64
	rank    float64
}

// where returns the conditions of q (without the page bound) on the index
// table s, and their arguments, $1 being the query. They read only the
// index's own columns: a match costs no events row.
func (ix *Index) where(q find, rooms bool) (string, []any) {
	args := []any{q.query}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	key := ix.ft.Key("s")
	conds := []string{ix.ft.Match("s", "$1")}
	if q.fields != nil {
		var fields []string
		for _, f := range q.fields {
			fields = append(fields, arg(f))
		}
		conds = append(conds, "s.field IN ("+strings.Join(fields, ", ")+")")
	}
	if rooms && q.rooms != nil {
		var joined, alts []string
		for _, r := range q.rooms {
			if r.untilNID == 0 {
				joined = append(joined, arg(r.room.String()))
			} else {
				alts = append(alts, "(s.room_id = "+arg(r.room.String())+" AND "+key+" <= "+arg(r.untilNID)+")")
			}
		}
		if len(joined) > 0 {
			alts = append(alts, "s.room_id IN ("+strings.Join(joined, ", ")+")")
		}
		conds = append(conds, "("+strings.Join(alts, " OR ")+")")
	}
	if q.sender != "" {
		// Only when paging a sender's group: one lookup per match.
		conds = append(conds, "EXISTS (SELECT 1 FROM events x WHERE x.event_nid = "+key+" AND x.sender = "+arg(q.sender.String())+")")
	}
	return strings.Join(conds, " AND "), args
}

// find runs an index query: the matching events in the order asked.
// Recent order is the order events were stored in (event_nid), newest
// first, which both engines walk without reading the matches past the
// page: FTS5 iterates a match in rowid order, and PostgreSQL may walk the
// primary key. Rank order ranks the newest rankWindow matches. The page
// is chosen from the index alone; only its rows are joined to events.
func (ix *Index) find(ctx context.Context, q find) ([]hitRow, error) {
	where, args := ix.where(q, true)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	key := ix.ft.Key("s")
	rank := ix.ft.Rank("s", "$1")
	var page, order string
	if q.recent {
		if q.before != 0 {
			where += " AND " + key + " < " + arg(q.before)
		}
		order = "nid DESC"
		page = `SELECT ` + key + ` AS nid, ` + rank + ` AS relevance FROM event_search s WHERE ` + where + `
			ORDER BY ` + key + ` DESC LIMIT ` + arg(q.limit)
	} else {
		order = "relevance DESC, nid DESC"
		page = `SELECT nid, relevance FROM (
				SELECT ` + key + ` AS nid, ` + rank + ` AS relevance FROM event_search s WHERE ` + where + `
				ORDER BY ` + key + ` DESC LIMIT ` + strconv.Itoa(rankWindow) + `
			) w ORDER BY ` + order + ` LIMIT ` + arg(q.limit) + ` OFFSET ` + arg(q.offset)
	}
	sql := `SELECT e.event_id, p.nid, p.relevance FROM (` + page + `) p JOIN events e ON e.event_nid = p.nid ORDER BY ` + order
	rows, err := ix.db.QueryPlanned(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("searching events: %w", err)
	}
	defer rows.Close()
	var out []hitRow
	for rows.Next() {
		var h hitRow
		var evID string
		if err := rows.Scan(&evID, &h.nid, &h.rank); err != nil {
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

// count estimates how many events match q in the rooms searched, which
// inRoom tells for each room and event_nid: the matches in all rooms
// (storage.CountEstimate: exact on SQLite, where it needs no column of
// each match, estimated by PostgreSQL's planner for common words), times
// the share of the newest countSample matches that lies in those rooms.
// Below countSample matches it is exact.
func (ix *Index) count(ctx context.Context, q find, inRoom func(id.RoomID, int64) bool) (int, error) {
	where, args := ix.where(q, false)
	total, err := ix.db.CountEstimate(ctx, `SELECT 1 FROM event_search s WHERE `+where, countExactBelow, args...)
	if err != nil {
		return 0, fmt.Errorf("counting search results: %w", err)
	}
	if total == 0 {
		return 0, nil
	}
	key := ix.ft.Key("s")
	rows, err := ix.db.QueryPlanned(ctx, `SELECT s.room_id, `+key+` FROM event_search s WHERE `+where+`
		ORDER BY `+key+` DESC LIMIT `+strconv.Itoa(countSample), args...)
	if err != nil {
		return 0, fmt.Errorf("counting search results: %w", err)
	}
	defer rows.Close()
	sampled, in := 0, 0
	for rows.Next() {
		var r string
		var nid int64
		if err := rows.Scan(&r, &nid); err != nil {
			return 0, fmt.Errorf("counting search results: %w", err)
		}
		sampled++
		if inRoom(id.RoomID(r), nid) {
			in++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("counting search results: %w", err)
	}
	if int64(sampled) >= total || sampled < countSample {
		return in, nil
	}
	return int(total * int64(in) / int64(sampled)), nil
}
