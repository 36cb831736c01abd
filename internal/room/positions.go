package room

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// LatestPositionsSince returns, for each of rooms that has events in
// (pos, upto], the newest stream position in it, from the recent events
// index when it covers pos. Unlike RoomsWithEventsSince it reads only the
// given rooms (through the (room_id, stream_pos) index), so a user's
// /sync costs the same however busy the rest of the server is.
func (s *Service) LatestPositionsSince(ctx context.Context, rooms []id.RoomID, pos, upto int64) (map[id.RoomID]int64, error) {
	if s.recent != nil {
		if out, ok := s.recent.latest(rooms, pos, upto); ok {
			return out, nil
		}
	}
	out := make(map[id.RoomID]int64)
	for len(rooms) > 0 {
		batch := rooms[:min(len(rooms), 500)]
		rooms = rooms[len(batch):]
		args := make([]any, 0, len(batch)+2)
		args = append(args, pos, upto)
		for _, r := range batch {
			args = append(args, r.String())
		}
		rows, err := s.db.QueryContext(ctx, `SELECT room_id, MAX(stream_pos) FROM events
			WHERE room_id IN (`+storage.Placeholders(3, len(batch))+`) AND stream_pos > $1 AND stream_pos <= $2 GROUP BY room_id`, args...)
		if err != nil {
			return nil, fmt.Errorf("finding active rooms: %w", err)
		}
		for rows.Next() {
			var r string
			var p int64
			if err := rows.Scan(&r, &p); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scanning active room: %w", err)
			}
			out[id.RoomID(r)] = p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("finding active rooms: %w", err)
		}
	}
	return out, nil
}
