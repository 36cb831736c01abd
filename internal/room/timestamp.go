package room

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// EventAtTimestamp returns the accepted timeline event of the room closest
// to ts (milliseconds) in one direction: the first at or after ts when
// forward, else the last at or before it. Only events at stream positions
// up to maxPos count (0: no bound), so a user who left sees nothing after
// their departure. Outliers, rejected and soft-failed events never count.
// It returns nil when there is none. One probe of the events_room_ts
// index (migration 00012) answers it.
//
// nextToGap reports whether history this server lacks may lie between ts
// and the event found: going forward, the event has prev_events not held
// here (a backward extremity, e.g. the join of a server that joined
// late); going backward, the event has no children held here and is not
// a forward extremity. Callers then ask other servers (federation
// timestamp_to_event), as the spec suggests.
func (s *Service) EventAtTimestamp(ctx context.Context, roomID id.RoomID, ts int64, forward bool, maxPos int64) (ev *Stored, nextToGap bool, err error) {
	if maxPos == 0 {
		maxPos = 1 << 62
	}
	q := `SELECT e.event_id FROM events e
		WHERE e.room_id = $1 AND e.origin_server_ts <= $2 AND e.outlier = 0 AND e.rejected = 0 AND e.soft_failed = 0 AND e.stream_pos <= $3
		ORDER BY e.origin_server_ts DESC, e.stream_pos DESC LIMIT 1`
	if forward {
		q = `SELECT e.event_id FROM events e
		WHERE e.room_id = $1 AND e.origin_server_ts >= $2 AND e.outlier = 0 AND e.rejected = 0 AND e.soft_failed = 0 AND e.stream_pos <= $3
		ORDER BY e.origin_server_ts ASC, e.stream_pos ASC LIMIT 1`
	}
	var evID string
	err = s.db.QueryRowContext(ctx, q, roomID.String(), ts, maxPos).Scan(&evID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("finding the event of %s nearest %d: %w", roomID, ts, err)
	}
	if ev, err = s.Event(ctx, id.EventID(evID)); err != nil {
		return nil, false, err
	}
	if forward {
		nextToGap, err = s.missingPrevEvents(ctx, ev)
	} else {
		nextToGap, err = s.withoutChildren(ctx, ev)
	}
	if err != nil {
		return nil, false, err
	}
	return ev, nextToGap, nil
}

// missingPrevEvents reports whether some prev_event of ev is not held as
// a timeline event.
func (s *Service) missingPrevEvents(ctx context.Context, ev *Stored) (bool, error) {
	if len(ev.PrevEvents) == 0 {
		return false, nil
	}
	args := make([]any, len(ev.PrevEvents))
	for i, p := range ev.PrevEvents {
		args[i] = p.String()
	}
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE outlier = 0 AND event_id IN (`+
		storage.Placeholders(1, len(args))+`)`, args...).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("checking the prev_events of %s: %w", ev.ID, err)
	}
	return n < len(args), nil
}

// withoutChildren reports whether ev is neither a forward extremity of its
// room nor a prev_event of any timeline event held here.
func (s *Service) withoutChildren(ctx context.Context, ev *Stored) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM forward_extremities WHERE room_id = $1 AND event_id = $2) +
		(SELECT COUNT(*) FROM (SELECT 1 FROM event_edges ee JOIN events c ON c.event_nid = ee.event_nid
			WHERE ee.prev_event_id = $2 AND c.outlier = 0 LIMIT 1) AS child)`,
		ev.RoomID().String(), ev.ID.String()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("checking the children of %s: %w", ev.ID, err)
	}
	return n == 0, nil
}
