package e2ee

import (
	"context"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
)

// keysChanged records, inside tx, that user's devices or keys changed: it
// takes a stream position for the change, and after commit wakes the user
// and every local user sharing a room with them. For a local user it also
// tells the other servers in those rooms (devices lists the changed devices;
// crossSigning marks a change of cross-signing keys or signatures).
func (s *Service) keysChanged(ctx context.Context, tx *storage.Tx, out *outbox, user id.UserID, devices []id.DeviceID, crossSigning bool) error {
	// One position per changed device: each m.device_list_update of the
	// change takes its own stream_id, and the next change of the user must
	// come after all of them.
	n := int64(max(1, len(devices)))
	last, err := storage.NextID(ctx, tx, "stream", n)
	if err != nil {
		return err
	}
	pos := last - n + 1
	if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_key_changes (user_id, stream_pos) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET stream_pos = excluded.stream_pos`, user.String(), last); err != nil {
		return fmt.Errorf("recording a key change of %s: %w", user, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT lm.user_id FROM current_state cs
		JOIN local_memberships lm ON lm.room_id = cs.room_id AND lm.membership = 'join'
		WHERE cs.type = 'm.room.member' AND cs.state_key = $1 AND cs.membership = 'join'`, user.String())
	if err != nil {
		return fmt.Errorf("listing users sharing a room with %s: %w", user, err)
	}
	wake := []id.UserID{}
	if s.local(user) {
		wake = append(wake, user)
	}
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return err
		}
		wake = append(wake, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	tx.AfterCommit(func() { s.notifier.Notify(notifier.DeviceLists, wake...) })
	if s.local(user) && s.edus != nil {
		return s.shareChange(ctx, tx, out, user, pos, devices, crossSigning)
	}
	return nil
}

// DeviceListChanges returns the device_lists section of a sync from since
// to upto for user (also /keys/changes): changed lists the users sharing a
// room with user whose keys changed in (since, upto], those who joined a
// room with user in that window (or whose room user joined), and user when
// their own keys changed or they joined a room; left lists those who left the
// last room they shared with user in that window.
func (s *Service) DeviceListChanges(ctx context.Context, user id.UserID, since, upto int64) (changed, left []id.UserID, err error) {
	if quiet, err := s.deviceListsQuiet(ctx, user, since, upto); err != nil || quiet {
		return nil, nil, err
	}
	shared, err := s.sharedUsers(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	changedSet := map[id.UserID]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT user_id FROM e2ee_key_changes WHERE stream_pos > $1 AND stream_pos <= $2`, since, upto)
	if err != nil {
		return nil, nil, fmt.Errorf("listing key changes since %d: %w", since, err)
	}
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if shared[u] || u == user {
			changedSet[u] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	// Membership changes in rooms user is (or was, in the window) in.
	rows, err = s.db.QueryContext(ctx, `SELECT cs.state_key, cs.membership, lm.membership, lm.stream_pos
		FROM local_memberships lm
		JOIN current_state cs ON cs.room_id = lm.room_id AND cs.type = 'm.room.member'
		JOIN events e ON e.event_nid = cs.event_nid
		WHERE lm.user_id = $1 AND (lm.membership = 'join' OR (lm.stream_pos > $2 AND lm.stream_pos <= $3))
		AND ((e.stream_pos > $2 AND e.stream_pos <= $3) OR (lm.stream_pos > $2 AND lm.stream_pos <= $3))`,
		user.String(), since, upto)
	if err != nil {
		return nil, nil, fmt.Errorf("listing membership changes for %s since %d: %w", user, since, err)
	}
	leftSet := map[id.UserID]bool{}
	for rows.Next() {
		var other id.UserID
		var membership *string
		var mine string
		var minePos int64
		if err := rows.Scan(&other, &membership, &mine, &minePos); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if other == user {
			// user joined a room in the window: as in Synapse, which lists
			// every member of a newly joined room, user is among them.
			if mine == "join" && minePos > since && minePos <= upto {
				changedSet[user] = true
			}
			continue
		}
		m := ""
		if membership != nil {
			m = *membership
		}
		switch {
		case shared[other]:
			if mine == "join" && m == "join" {
				changedSet[other] = true
			}
		case m == "join" || m == "leave" || m == "ban":
			leftSet[other] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for u := range changedSet {
		if !leftSet[u] {
			changed = append(changed, u)
		}
	}
	for u := range leftSet {
		left = append(left, u)
	}
	slices.Sort(changed)
	slices.Sort(left)
	return changed, left, nil
}

// deviceListsQuiet reports whether nothing in (since, upto] can change
// user's device_lists: no keys changed anywhere, and no membership changed
// in a room user is in or left in the window. That is the case in almost
// every sync, and these two index range reads are much cheaper than
// listing everyone user shares a room with, which the full answer needs.
func (s *Service) deviceListsQuiet(ctx context.Context, user id.UserID, since, upto int64) (bool, error) {
	var busy int
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM (SELECT 1 FROM e2ee_key_changes WHERE stream_pos > $2 AND stream_pos <= $3 LIMIT 1) k) +
		(SELECT COUNT(*) FROM (SELECT 1 FROM local_memberships lm
			JOIN events e ON e.room_id = lm.room_id AND e.stream_pos > $2 AND e.stream_pos <= $3
			WHERE lm.user_id = $1 AND (lm.membership = 'join' OR (lm.stream_pos > $2 AND lm.stream_pos <= $3))
			AND e.type = 'm.room.member' LIMIT 1) m)`,
		user.String(), since, upto).Scan(&busy)
	if err != nil {
		return false, fmt.Errorf("checking device list changes for %s since %d: %w", user, since, err)
	}
	return busy == 0, nil
}

// sharedUsers returns the users who share a joined room with user.
func (s *Service) sharedUsers(ctx context.Context, user id.UserID) (map[id.UserID]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT cs.state_key FROM local_memberships lm
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
