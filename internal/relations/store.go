package relations

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// MaxDepth is how far a recursive /relations query follows relations of
// relations (spec v1.10 leaves it to the server; Synapse uses 3).
const MaxDepth = 3

// Page selects a page of stream positions, with the meaning of /messages
// tokens: backwards from From (inclusive) down to To (exclusive),
// forwards after From up to To (inclusive). Zero bounds are open.
type Page struct {
	From, To  int64
	Backwards bool
	// Limit is the page size; one more row is read to tell if more follow.
	Limit int
}

// Child is one relating event found in the index.
type Child struct {
	ID        id.EventID
	StreamPos int64
}

// Filter narrows a /relations query.
type Filter struct {
	RelType, EventType string
	// Recurse also returns relations of the children, MaxDepth deep.
	Recurse bool
}

// Children returns the events relating to parent in roomID, in page order,
// and whether more follow the page.
func (s *Store) Children(ctx context.Context, roomID id.RoomID, parent id.EventID, f Filter, pg Page) ([]Child, bool, error) {
	depth := 1
	if f.Recurse {
		depth = MaxDepth
	}
	args := []any{roomID.String(), parent.String(), depth}
	var where []string
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.RelType != "" {
		where = append(where, "t.rel_type = "+arg(f.RelType))
	}
	if f.EventType != "" {
		where = append(where, "t.child_type = "+arg(f.EventType))
	}
	order := "ASC"
	if pg.Backwards {
		order = "DESC"
		from := pg.From
		if from == 0 {
			from = math.MaxInt64
		}
		where = append(where, "e.stream_pos <= "+arg(from))
		if pg.To > 0 {
			where = append(where, "e.stream_pos > "+arg(pg.To))
		}
	} else {
		where = append(where, "e.stream_pos > "+arg(max(pg.From, 0)))
		if pg.To > 0 {
			where = append(where, "e.stream_pos <= "+arg(pg.To))
		}
	}
	// A recursive walk from the parent: the rows of one level are the
	// children of the previous level's events, in the same room.
	q := `WITH RECURSIVE t (child_nid, child_id, rel_type, child_type, depth) AS (
		SELECT child_nid, child_id, rel_type, child_type, 1 FROM event_relations WHERE room_id = $1 AND parent_id = $2
		UNION ALL
		SELECT r.child_nid, r.child_id, r.rel_type, r.child_type, t.depth + 1
		FROM event_relations r JOIN t ON r.parent_id = t.child_id
		WHERE r.room_id = $1 AND t.depth < $3)
	SELECT DISTINCT t.child_id, e.stream_pos FROM t JOIN events e ON e.event_nid = t.child_nid
	WHERE ` + strings.Join(where, " AND ") + `
	ORDER BY e.stream_pos ` + order + ` LIMIT ` + arg(pg.Limit+1)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("reading relations of %s: %w", parent, err)
	}
	defer rows.Close()
	var out []Child
	for rows.Next() {
		var c Child
		var evID string
		if err := rows.Scan(&evID, &c.StreamPos); err != nil {
			return nil, false, fmt.Errorf("reading relations of %s: %w", parent, err)
		}
		c.ID = id.EventID(evID)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("reading relations of %s: %w", parent, err)
	}
	more := len(out) > pg.Limit
	if more {
		out = out[:pg.Limit]
	}
	return out, more, nil
}

// ThreadRoots returns the roots of roomID's threads, the most recently
// replied to first, with the position of their latest reply: those whose
// latest reply is at or below before (0: any). participant, if set, keeps
// only the threads it started or replied to.
func (s *Store) ThreadRoots(ctx context.Context, roomID id.RoomID, participant id.UserID, before int64, limit int) ([]Child, bool, error) {
	if before == 0 {
		before = math.MaxInt64
	}
	args := []any{roomID.String(), Thread, before}
	having := ""
	if participant != "" {
		args = append(args, participant.String())
		having = ` AND (SUM(CASE WHEN r.sender = $4 THEN 1 ELSE 0 END) > 0
			OR EXISTS (SELECT 1 FROM events p WHERE p.event_id = r.parent_id AND p.sender = $4))`
	}
	args = append(args, limit+1)
	q := `SELECT r.parent_id, MAX(e.stream_pos) FROM event_relations r JOIN events e ON e.event_nid = r.child_nid
		WHERE r.room_id = $1 AND r.rel_type = $2
		GROUP BY r.parent_id
		HAVING MAX(e.stream_pos) <= $3` + having + `
		ORDER BY MAX(e.stream_pos) DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("listing threads of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []Child
	for rows.Next() {
		var c Child
		var evID string
		if err := rows.Scan(&evID, &c.StreamPos); err != nil {
			return nil, false, fmt.Errorf("listing threads of %s: %w", roomID, err)
		}
		c.ID = id.EventID(evID)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("listing threads of %s: %w", roomID, err)
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

// ThreadSummary is what a thread root bundles as m.thread.
type ThreadSummary struct {
	// Room is the room of the replies; relations across rooms are void.
	Room   id.RoomID
	Count  int
	Latest id.EventID
	// Participated is whether the user asked about replied in the thread;
	// the caller adds whether it sent the root.
	Participated bool
}

// Threads summarises the threads rooted at roots, in one query for all of
// them; roots without replies are absent. The caller checks that each
// root is in the room its relations were indexed in (see Bundle).
func (s *Store) Threads(ctx context.Context, user id.UserID, roots []id.EventID) (map[id.EventID]ThreadSummary, error) {
	out := map[id.EventID]ThreadSummary{}
	if len(roots) == 0 {
		return out, nil
	}
	args := []any{Thread, user.String()}
	for _, r := range roots {
		args = append(args, r.String())
	}
	q := `SELECT g.parent_id, g.room_id, g.n, g.mine, l.event_id FROM (
			SELECT r.parent_id, r.room_id, COUNT(*) AS n, MAX(e.stream_pos) AS latest,
				SUM(CASE WHEN r.sender = $2 THEN 1 ELSE 0 END) AS mine
			FROM event_relations r JOIN events e ON e.event_nid = r.child_nid
			WHERE r.rel_type = $1 AND r.parent_id IN (` + storage.Placeholders(3, len(roots)) + `)
			GROUP BY r.parent_id, r.room_id) g
		JOIN events l ON l.stream_pos = g.latest`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("summarising threads: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var parent, roomID, latest string
		var n, mine int
		if err := rows.Scan(&parent, &roomID, &n, &mine, &latest); err != nil {
			return nil, fmt.Errorf("summarising threads: %w", err)
		}
		out[id.EventID(parent)] = ThreadSummary{Room: id.RoomID(roomID), Count: n, Latest: id.EventID(latest), Participated: mine > 0}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summarising threads: %w", err)
	}
	return out, nil
}

// Edge is one indexed relation.
type Edge struct {
	Room           id.RoomID
	Parent, Child  id.EventID
	RelType        string
	ChildType      string
	Sender         id.UserID
	OriginServerTS int64
}

// Edges returns the relations of the given types to parents, in one query.
func (s *Store) Edges(ctx context.Context, parents []id.EventID, relTypes ...string) ([]Edge, error) {
	if len(parents) == 0 || len(relTypes) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(relTypes)+len(parents))
	for _, t := range relTypes {
		args = append(args, t)
	}
	for _, p := range parents {
		args = append(args, p.String())
	}
	rows, err := s.db.QueryContext(ctx, `SELECT r.room_id, r.parent_id, r.child_id, r.rel_type, r.child_type, r.sender, e.origin_server_ts
		FROM event_relations r JOIN events e ON e.event_nid = r.child_nid
		WHERE r.rel_type IN (`+storage.Placeholders(1, len(relTypes))+`) AND r.parent_id IN (`+storage.Placeholders(len(relTypes)+1, len(parents))+`)
		ORDER BY e.stream_pos`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading relations: %w", err)
	}
	defer rows.Close()
	var out []Edge
	for rows.Next() {
		var e Edge
		var roomID, parent, child, sender string
		if err := rows.Scan(&roomID, &parent, &child, &e.RelType, &e.ChildType, &sender, &e.OriginServerTS); err != nil {
			return nil, fmt.Errorf("reading relations: %w", err)
		}
		e.Room, e.Parent, e.Child, e.Sender = id.RoomID(roomID), id.EventID(parent), id.EventID(child), id.UserID(sender)
		out = append(out, e)
	}
	return out, rows.Err()
}
