package notifications

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// Counts are unread notification counts.
type Counts struct {
	Notifications int64
	Highlights    int64
}

// RoomCounts are a user's unread counts in one room.
type RoomCounts struct {
	// Threads holds the counts per thread: "main" for the main timeline,
	// else the thread root's event ID. Threads without any are absent.
	Threads map[string]Counts
	// StreamPos is the position of the latest change of these counts.
	StreamPos int64
}

// Total is the room's count over the main timeline and every thread.
func (rc *RoomCounts) Total() Counts {
	var c Counts
	for _, t := range rc.Threads {
		c.Notifications += t.Notifications
		c.Highlights += t.Highlights
	}
	return c
}

// maxCachedUsers bounds the counts cache; past it the cache starts over.
const maxCachedUsers = 100_000

// Unread returns the user's counts in every room that has had any, from
// the cache when they are there. The map is shared: read it, never change
// it.
func (s *Service) Unread(ctx context.Context, user id.UserID) (map[id.RoomID]*RoomCounts, error) {
	s.mu.Lock()
	c, ok := s.counts[user]
	v, busy := s.version[user], s.inflight[user] > 0
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := s.loadUnread(ctx, user)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if !busy && s.inflight[user] == 0 && s.version[user] == v {
		if len(s.counts) >= maxCachedUsers {
			clear(s.counts)
		}
		s.counts[user] = c
	}
	s.mu.Unlock()
	return c, nil
}

func (s *Service) loadUnread(ctx context.Context, user id.UserID) (map[id.RoomID]*RoomCounts, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT room_id, thread_id, notification_count, highlight_count, stream_pos
		FROM notification_counts WHERE user_id = $1`, user.String())
	if err != nil {
		return nil, fmt.Errorf("reading the unread counts of %s: %w", user, err)
	}
	defer rows.Close()
	out := map[id.RoomID]*RoomCounts{}
	for rows.Next() {
		var roomID, thread string
		var c Counts
		var pos int64
		if err := rows.Scan(&roomID, &thread, &c.Notifications, &c.Highlights, &pos); err != nil {
			return nil, fmt.Errorf("reading the unread counts of %s: %w", user, err)
		}
		rc := out[id.RoomID(roomID)]
		if rc == nil {
			rc = &RoomCounts{Threads: map[string]Counts{}}
			out[id.RoomID(roomID)] = rc
		}
		rc.StreamPos = max(rc.StreamPos, pos)
		if c != (Counts{}) {
			rc.Threads[thread] = c
		}
	}
	return out, rows.Err()
}

// Notification is one stored notification of a user.
type Notification struct {
	RoomID    id.RoomID
	EventID   id.EventID
	StreamPos int64
	Actions   json.RawMessage
	Highlight bool
	// Read is set once a receipt (or the user's own event) covers it.
	Read bool
	// TS is when it was recorded, in milliseconds since the epoch.
	TS int64
}

// List returns up to limit of the user's notifications before stream
// position before (0: the newest), newest first, only highlights if
// onlyHighlight.
func (s *Service) List(ctx context.Context, user id.UserID, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	if before <= 0 {
		before = 1 << 62
	}
	q := `SELECT room_id, event_id, stream_pos, actions, highlight, unread, ts FROM notifications
		WHERE user_id = $1 AND stream_pos < $2`
	if onlyHighlight {
		q += ` AND highlight = 1`
	}
	q += ` ORDER BY stream_pos DESC LIMIT $3`
	rows, err := s.db.QueryContext(ctx, q, user.String(), before, limit)
	if err != nil {
		return nil, fmt.Errorf("listing the notifications of %s: %w", user, err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var actions string
		var highlight, unread int64
		if err := rows.Scan(&n.RoomID, &n.EventID, &n.StreamPos, &actions, &highlight, &unread, &n.TS); err != nil {
			return nil, fmt.Errorf("listing the notifications of %s: %w", user, err)
		}
		n.Actions, n.Highlight, n.Read = json.RawMessage(actions), highlight != 0, unread == 0
		out = append(out, n)
	}
	return out, rows.Err()
}

// Retention is how long notifications are kept: Synapse's month.
const Retention = 30 * 24 * time.Hour

// Prune forgets the notifications recorded before before (the counts of
// those still unread drop with them at the next recount), and returns how
// many it forgot.
func (s *Service) Prune(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM notifications WHERE ts < $1`, before.UnixMilli())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pruning notifications: %w", err)
	}
	return n, nil
}
