package pushers

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/storage"
)

// queued is what a queue row keeps of a notification: enough to build the
// gateway request later, whatever happens to the room meanwhile.
type queued struct {
	Event     json.RawMessage `json:"event"`
	Tweaks    map[string]any  `json:"tweaks,omitempty"`
	Highlight bool            `json:"highlight,omitempty"`
	Unread    int             `json:"unread"`
}

// Notified queues n for every http pusher of n.UserID, in tx (the
// transaction recording the notification), and wakes their workers once
// tx commits. It implements push.Sink. Notifications whose actions do not
// include "notify" are not pushed (Synapse's check); for a user without
// pushers it costs one indexed query.
// WithPushers is push.Sink's: one query for a whole batch of users.
func (s *Service) WithPushers(ctx context.Context, tx *storage.Tx, users []id.UserID) (map[id.UserID]bool, error) {
	out := map[id.UserID]bool{}
	const chunk = 500
	for start := 0; start < len(users); start += chunk {
		part := users[start:min(start+chunk, len(users))]
		args := make([]any, 0, len(part)+1)
		args = append(args, KindHTTP)
		for _, u := range part {
			args = append(args, u.String())
		}
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT user_id FROM pushers WHERE kind = $1 AND user_id IN (`+
			storage.Placeholders(2, len(part))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("finding users with pushers: %w", err)
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return nil, fmt.Errorf("finding users with pushers: %w", err)
			}
			out[id.UserID(u)] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("finding users with pushers: %w", err)
		}
	}
	return out, nil
}

func (s *Service) Notified(ctx context.Context, tx *storage.Tx, n push.Notification) error {
	if !notifies(n.Actions) {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT pusher_id FROM pushers WHERE user_id = $1 AND kind = $2 ORDER BY pusher_id`,
		n.UserID.String(), KindHTTP)
	if err != nil {
		return fmt.Errorf("listing the pushers of %s: %w", n.UserID, err)
	}
	var ids []int64
	for rows.Next() {
		var p int64
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return fmt.Errorf("listing the pushers of %s: %w", n.UserID, err)
		}
		ids = append(ids, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing the pushers of %s: %w", n.UserID, err)
	}
	if len(ids) == 0 {
		return nil
	}
	body, err := json.Marshal(queued{Event: n.Event, Tweaks: n.Tweaks, Highlight: n.Highlight, Unread: n.Unread})
	if err != nil {
		return fmt.Errorf("queueing a push of %s: %w", n.EventID, err)
	}
	last, err := storage.NextID(ctx, tx, "pusher_queue", int64(len(ids)))
	if err != nil {
		return err
	}
	now := s.now().UnixMilli()
	for i, p := range ids {
		if _, err := tx.ExecContext(ctx, `INSERT INTO pusher_queue (queue_id, pusher_id, stream_pos, event_id, room_id, notification, created_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			last-int64(len(ids)-1-i), p, n.StreamPos, n.EventID.String(), n.RoomID.String(), string(body), now); err != nil {
			return fmt.Errorf("queueing a push of %s: %w", n.EventID, err)
		}
	}
	tx.AfterCommit(func() { s.kick(ids) })
	return nil
}

// notifies reports whether actions include "notify". No actions at all
// counts as notifying: the producer hands over notifications only.
func notifies(actions []json.RawMessage) bool {
	if len(actions) == 0 {
		return true
	}
	for _, a := range actions {
		var s string
		if json.Unmarshal(a, &s) == nil && s == "notify" {
			return true
		}
	}
	return false
}

// queuedPushers lists the pushers with queued notifications.
func (s *Service) queuedPushers(ctx context.Context) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT pusher_id FROM pusher_queue`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var p int64
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		ids = append(ids, p)
	}
	return ids, rows.Err()
}
