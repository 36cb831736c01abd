package room

import (
	"context"
	"fmt"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// recentIndex holds, per room, the stream positions and IDs of the last
// timeline events committed, so that a woken /sync finds which of its
// rooms have news, and their newest events, without a query. It is kept
// on SQLite only: there, an event enters the index before CurrentID shows
// its position (storage.Tx.BeforePublish), so a reader that takes
// CurrentID as "now" finds every event up to now in the index.
//
// Coverage: every accepted event with a position above floor is indexed,
// unless its room has been evicted from the index, in which case floor has
// moved past that room's events. Each room also has its own floor, the
// position of the newest event it dropped to stay short, below which it
// knows nothing.
type recentIndex struct {
	mu    sync.Mutex
	floor int64
	rooms *lru.Cache[id.RoomID, *recentRoom]
}

// recentRoom is one room's newest events, oldest first.
type recentRoom struct {
	floor int64
	evs   []recentEvent
}

type recentEvent struct {
	pos int64
	id  id.EventID
}

const (
	// recentPerRoom is how many events a room keeps: more than a sync's
	// usual timeline limit, so that a woken sync rarely needs the
	// database for its timeline.
	recentPerRoom = 24
	// recentRooms bounds the rooms indexed (a few kilobytes each).
	recentRooms = 10000
)

// EnableRecentIndex starts the in-memory index of recent events, on SQLite
// (see recentIndex). Call it after New and before the first write.
func (s *Service) EnableRecentIndex(ctx context.Context) error {
	if s.db.Dialect() != storage.SQLite {
		return nil
	}
	floor, err := s.db.CurrentID(ctx, "stream")
	if err != nil {
		return fmt.Errorf("starting the recent events index: %w", err)
	}
	s.recent = newRecentIndex(floor, recentRooms)
	return nil
}

// newRecentIndex returns an index covering positions above floor for up
// to capacity rooms.
func newRecentIndex(floor int64, capacity int) *recentIndex {
	ri := &recentIndex{floor: floor}
	ri.rooms, _ = lru.NewWithEvict[id.RoomID, *recentRoom](capacity, func(_ id.RoomID, r *recentRoom) {
		// Called under ri.mu (add holds it): the evicted room's events
		// are no longer covered, so nothing at or below its newest is.
		if n := len(r.evs); n > 0 {
			ri.floor = max(ri.floor, r.evs[n-1].pos)
		}
	})
	return ri
}

// indexRecent adds st, an accepted timeline event, to the recent events
// index once tx commits.
func (s *Service) indexRecent(tx *storage.Tx, roomID id.RoomID, st *Stored) {
	if s.recent == nil {
		return
	}
	tx.BeforePublish(func() { s.recent.add(roomID, st.StreamPos, st.ID) })
}

// add records an accepted event that was just committed.
func (ri *recentIndex) add(roomID id.RoomID, pos int64, evID id.EventID) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	r, ok := ri.rooms.Get(roomID)
	if !ok {
		r = &recentRoom{floor: ri.floor}
		ri.rooms.Add(roomID, r)
	}
	if n := len(r.evs); n > 0 && pos <= r.evs[n-1].pos {
		return // positions only grow within a room; a repeat changes nothing
	}
	if len(r.evs) == recentPerRoom {
		r.floor = r.evs[0].pos
		r.evs = append(r.evs[:0], r.evs[1:]...)
	}
	r.evs = append(r.evs, recentEvent{pos: pos, id: evID})
}

// latest returns, for each of rooms with an event in (since, upto], the
// newest such position. ok is false when the index cannot tell (since
// predates what it covers).
func (ri *recentIndex) latest(rooms []id.RoomID, since, upto int64) (map[id.RoomID]int64, bool) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if since < ri.floor {
		return nil, false
	}
	out := make(map[id.RoomID]int64)
	for _, roomID := range rooms {
		r, ok := ri.rooms.Peek(roomID)
		if !ok {
			continue // nothing since the floor
		}
		for i := len(r.evs) - 1; i >= 0; i-- {
			if p := r.evs[i].pos; p <= upto {
				if p > since {
					out[roomID] = p
				}
				break
			}
		}
	}
	return out, true
}

// timeline answers Timeline from the index when it holds every event of
// the range, returning the IDs in the order asked for.
func (ri *recentIndex) timeline(roomID id.RoomID, rg Range) ([]id.EventID, bool) {
	if rg.After <= 0 || rg.Before <= 0 {
		return nil, false // open ranges reach into history
	}
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if rg.After < ri.floor {
		return nil, false
	}
	r, ok := ri.rooms.Peek(roomID)
	if !ok {
		return []id.EventID{}, true
	}
	if rg.After < r.floor {
		return nil, false
	}
	var ids []id.EventID
	if rg.Backwards {
		for i := len(r.evs) - 1; i >= 0 && len(ids) < rg.Limit; i-- {
			if e := r.evs[i]; e.pos > rg.After && e.pos < rg.Before {
				ids = append(ids, e.id)
			}
		}
	} else {
		for i := 0; i < len(r.evs) && len(ids) < rg.Limit; i++ {
			if e := r.evs[i]; e.pos > rg.After && e.pos < rg.Before {
				ids = append(ids, e.id)
			}
		}
	}
	return ids, true
}
