package room

import (
	"strconv"
	"strings"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// PublicRoomsPage is one page of the directory in the wire form the client
// and federation APIs share (definitions/public_rooms_response.yaml).
type PublicRoomsPage struct {
	Chunk     []PublicRoom `json:"chunk"`
	NextBatch string       `json:"next_batch,omitempty"`
	PrevBatch string       `json:"prev_batch,omitempty"`
	Total     int          `json:"total_room_count_estimate"`
}

// Paginate cuts a page of limit rooms (0: all) starting at the offset
// token since ("o<n>"; empty for the first page).
func Paginate(all []PublicRoom, limit int, since string) (PublicRoomsPage, error) {
	start := 0
	if since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(since, "o"))
		if err != nil || !strings.HasPrefix(since, "o") || n < 0 {
			return PublicRoomsPage{}, mxerr.InvalidParam.With("invalid since token %q", since)
		}
		start = min(n, len(all))
	}
	end := len(all)
	if limit > 0 {
		end = min(start+limit, len(all))
	}
	page := PublicRoomsPage{Chunk: all[start:end], Total: len(all)}
	if end < len(all) {
		page.NextBatch = "o" + strconv.Itoa(end)
	}
	if start > 0 {
		page.PrevBatch = "o" + strconv.Itoa(max(0, start-max(limit, 1)))
	}
	return page, nil
}
