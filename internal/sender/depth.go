package sender

import (
	"context"
	"fmt"
)

// QueueDepths returns how many PDUs and EDUs wait for each destination
// with a backlog (in flight included), for metrics.
func (s *Sender) QueueDepths(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT destination, COUNT(*) FROM sender_queue GROUP BY destination`)
	if err != nil {
		return nil, fmt.Errorf("counting queued entries per destination: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var dest string
		var n int64
		if err := rows.Scan(&dest, &n); err != nil {
			return nil, fmt.Errorf("counting queued entries per destination: %w", err)
		}
		out[dest] = n
	}
	return out, rows.Err()
}
