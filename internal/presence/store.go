package presence

import (
	"context"
	"database/sql"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// row is a user's persisted presence.
type row struct {
	user id.UserID
	snapshot
}

// load reads the persisted presence of users who are not offline.
func load(ctx context.Context, db *storage.DB) ([]row, error) {
	rows, err := db.QueryContext(ctx, `SELECT user_id, presence, status_msg, last_active_ts, last_federation_ts,
		currently_active FROM presence WHERE presence <> 'offline'`)
	if err != nil {
		return nil, fmt.Errorf("loading presence: %w", err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		var msg sql.NullString
		var active int64
		if err := rows.Scan(&r.user, &r.presence, &msg, &r.lastActive, &r.lastFederation, &active); err != nil {
			return nil, fmt.Errorf("loading presence: %w", err)
		}
		if msg.Valid {
			r.statusMsg = &msg.String
		}
		r.currentlyActive = active != 0
		out = append(out, r)
	}
	return out, rows.Err()
}

// save writes the latest presence of each user in rows, in one write.
func save(ctx context.Context, db *storage.DB, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	latest := make(map[id.UserID]row, len(rows))
	for _, r := range rows {
		latest[r.user] = r
	}
	return db.WriteTx(ctx, func(tx *storage.Tx) error {
		for _, r := range latest {
			var msg any
			if r.statusMsg != nil {
				msg = *r.statusMsg
			}
			active := int64(0)
			if r.currentlyActive {
				active = 1
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO presence (user_id, presence, status_msg, last_active_ts,
				last_federation_ts, currently_active) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (user_id) DO UPDATE SET presence = excluded.presence, status_msg = excluded.status_msg,
				last_active_ts = excluded.last_active_ts, last_federation_ts = excluded.last_federation_ts,
				currently_active = excluded.currently_active`,
				r.user.String(), r.presence, msg, r.lastActive, r.lastFederation, active); err != nil {
				return fmt.Errorf("saving the presence of %s: %w", r.user, err)
			}
		}
		return nil
	})
}

// joinedRooms lists the rooms user is joined to, as this server sees them.
func joinedRooms(ctx context.Context, db *storage.DB, user id.UserID) ([]id.RoomID, error) {
	rows, err := db.QueryContext(ctx, `SELECT room_id FROM current_state
		WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'join'`, user.String())
	if err != nil {
		return nil, fmt.Errorf("listing the rooms of %s: %w", user, err)
	}
	defer rows.Close()
	var out []id.RoomID
	for rows.Next() {
		var r id.RoomID
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// sharedUsers returns the users joined to a room user is joined to.
func sharedUsers(ctx context.Context, db *storage.DB, user id.UserID) (map[id.UserID]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT DISTINCT cs.state_key FROM local_memberships lm
		JOIN current_state cs ON cs.room_id = lm.room_id AND cs.type = 'm.room.member' AND cs.membership = 'join'
		WHERE lm.user_id = $1 AND lm.membership = 'join'`, user.String())
	if err != nil {
		return nil, fmt.Errorf("listing users sharing a room with %s: %w", user, err)
	}
	defer rows.Close()
	out := map[id.UserID]bool{}
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}

// shareRoom reports whether a and b are both joined to some room.
func shareRoom(ctx context.Context, db *storage.DB, a, b id.UserID) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM current_state x
		JOIN current_state y ON y.room_id = x.room_id AND y.type = 'm.room.member' AND y.state_key = $2
			AND y.membership = 'join'
		WHERE x.type = 'm.room.member' AND x.state_key = $1 AND x.membership = 'join' LIMIT 1) s`,
		a.String(), b.String()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("checking whether %s and %s share a room: %w", a, b, err)
	}
	return n > 0, nil
}

// sharedWithLocal reports whether a local user is joined to a room user is
// joined to.
func sharedWithLocal(ctx context.Context, db *storage.DB, user id.UserID) (bool, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM current_state cs
		JOIN local_memberships lm ON lm.room_id = cs.room_id AND lm.membership = 'join'
		WHERE cs.type = 'm.room.member' AND cs.state_key = $1 AND cs.membership = 'join' LIMIT 1) s`,
		user.String()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("checking whether %s shares a room with a local user: %w", user, err)
	}
	return n > 0, nil
}

// roomMembers lists the users joined to roomID.
func roomMembers(ctx context.Context, db *storage.DB, roomID id.RoomID) ([]id.UserID, error) {
	rows, err := db.QueryContext(ctx, `SELECT state_key FROM current_state
		WHERE room_id = $1 AND type = 'm.room.member' AND membership = 'join'`, roomID.String())
	if err != nil {
		return nil, fmt.Errorf("listing the members of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []id.UserID
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
