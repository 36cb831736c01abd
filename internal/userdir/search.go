package userdir

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"
)

// maxWords bounds the words of a search term that are matched: each is a
// clause of the query.
const maxWords = 8

// Search returns up to limit users whose display name or user ID has a
// word starting with each word of term, that searcher may find, and
// whether more matched. As in Synapse, users sharing a room with the
// searcher come first, then those with a display name, then an avatar;
// ties go by display name and user ID.
func (s *Service) Search(ctx context.Context, searcher id.UserID, term string, limit int) ([]Result, bool, error) {
	ws := words(term)
	if len(ws) == 0 || limit <= 0 {
		return []Result{}, false, nil
	}
	if len(ws) > maxWords {
		ws = ws[:maxWords]
	}
	args := []any{searcher.String(), ws[0], upper(ws[0])}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	// shared: the user is joined to a room the searcher is joined to.
	const shared = `EXISTS (SELECT 1 FROM user_directory_members a JOIN user_directory_members b ON b.room_id = a.room_id
		WHERE a.user_id = $1 AND b.user_id = d.user_id)`
	var q strings.Builder
	q.WriteString(`SELECT d.user_id, d.display_name, d.avatar_url, CASE WHEN ` + shared + ` THEN 1 ELSE 0 END AS shared
		FROM user_directory d
		WHERE d.user_id IN (SELECT t.user_id FROM user_directory_terms t WHERE t.term >= $2 AND t.term < $3)`)
	for _, w := range ws[1:] {
		fmt.Fprintf(&q, ` AND EXISTS (SELECT 1 FROM user_directory_terms t WHERE t.user_id = d.user_id AND t.term >= %s AND t.term < %s)`,
			arg(w), arg(upper(w)))
	}
	if !s.searchAll {
		q.WriteString(` AND (` + shared + ` OR EXISTS (SELECT 1 FROM user_directory_members m
			JOIN user_directory_public_rooms p ON p.room_id = m.room_id WHERE m.user_id = d.user_id))`)
	}
	fmt.Fprintf(&q, ` ORDER BY shared DESC, CASE WHEN d.display_name IS NULL THEN 1 ELSE 0 END,
		CASE WHEN d.avatar_url IS NULL THEN 1 ELSE 0 END, d.sort_key, d.user_id LIMIT %s`, arg(limit+1))
	rows, err := s.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, false, fmt.Errorf("searching the user directory: %w", err)
	}
	defer rows.Close()
	out := []Result{}
	for rows.Next() {
		var r Result
		var dn, av sql.NullString
		var sh int64
		if err := rows.Scan(&r.UserID, &dn, &av, &sh); err != nil {
			return nil, false, fmt.Errorf("reading the user directory: %w", err)
		}
		r.DisplayName, r.AvatarURL = dn.String, av.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("reading the user directory: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}
