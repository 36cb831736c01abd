package slidingsync

import (
	"context"
	"fmt"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
)

// BumpTypes are the event types that move a room up a list (its
// bump_stamp), as Synapse's SLIDING_SYNC_DEFAULT_BUMP_EVENT_TYPES: state
// changes such as a join, a name or a topic do not, so a quiet room does
// not jump to the top when someone joins it.
var BumpTypes = map[string]bool{
	"m.room.create":    true,
	"m.room.message":   true,
	"m.room.encrypted": true,
	"m.sticker":        true,
	"m.call.invite":    true,
	"m.poll.start":     true,
	"m.beacon_info":    true,
}

// Bumps keeps each room's bump position: the stream position of its
// newest event of a BumpTypes type. It is a room.Indexer, so the row
// (room_bumps) is written in the transaction that stores the event, and
// an in-memory cache holds the rooms read recently, so that ordering a
// user's rooms is one map lookup per room rather than a timeline each.
type Bumps struct {
	db *storage.DB
	mu sync.Mutex
	// cache holds known bump positions. Only positions read after the
	// newest write of a room, or that write itself, enter it (see
	// Positions), so it never holds a stale position.
	cache *lru.Cache[id.RoomID, int64]
}

// maxCachedBumps bounds the bump cache (about 100 bytes a room).
const maxCachedBumps = 200000

// NewBumps returns the bump index over db.
func NewBumps(db *storage.DB) *Bumps {
	c, _ := lru.New[id.RoomID, int64](maxCachedBumps)
	return &Bumps{db: db, cache: c}
}

var _ room.Indexer = (*Bumps)(nil)

// EventStored records st as its room's bump when its type bumps.
func (b *Bumps) EventStored(ctx context.Context, tx *storage.Tx, st *room.Stored) error {
	if !BumpTypes[st.Type] || st.StreamPos < 0 {
		// Negative positions are backfilled history: older than
		// anything the room has, never a bump.
		return nil
	}
	roomID := st.RoomID()
	// Queued: persist pipelines its statements on PostgreSQL. The room's
	// lock serialises its writers, so the last write is the newest.
	if err := tx.Queue(ctx, `INSERT INTO room_bumps (room_id, event_nid) VALUES ($1, $2)
		ON CONFLICT (room_id) DO UPDATE SET event_nid = excluded.event_nid`, roomID.String(), st.NID); err != nil {
		return fmt.Errorf("recording the bump of %s: %w", roomID, err)
	}
	// The position is known by commit at the latest; on SQLite the cache
	// has it before readers see the position as current.
	tx.BeforePublish(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if old, ok := b.cache.Peek(roomID); !ok || old < st.StreamPos {
			b.cache.Add(roomID, st.StreamPos)
		}
	})
	return nil
}

// EventRedacted changes nothing: a redacted message still happened when it
// did, as in Synapse.
func (b *Bumps) EventRedacted(context.Context, *storage.Tx, id.EventID) error { return nil }

// Positions returns the bump position of each of rooms, in their order
// (0 for a room with none). Rooms not cached are read in batches of 500.
func (b *Bumps) Positions(ctx context.Context, rooms []id.RoomID) ([]int64, error) {
	out := make([]int64, len(rooms))
	var missing []int // indexes into rooms
	for i, r := range rooms {
		if p, ok := b.cache.Get(r); ok {
			out[i] = p
		} else {
			missing = append(missing, i)
		}
	}
	for len(missing) > 0 {
		batch := missing[:min(len(missing), 500)]
		missing = missing[len(batch):]
		args := make([]any, len(batch))
		at := make(map[id.RoomID]int, len(batch))
		for j, i := range batch {
			args[j] = rooms[i].String()
			at[rooms[i]] = i
		}
		rows, err := b.db.QueryContext(ctx, `SELECT b.room_id, e.stream_pos FROM room_bumps b
			JOIN events e ON e.event_nid = b.event_nid WHERE b.room_id IN (`+storage.Placeholders(1, len(batch))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("reading bump positions: %w", err)
		}
		for rows.Next() {
			var r string
			var p int64
			if err := rows.Scan(&r, &p); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scanning bump position: %w", err)
			}
			roomID := id.RoomID(r)
			b.mu.Lock()
			// A write that committed while this read ran has added its
			// newer position already: keep it.
			if cur, ok := b.cache.Peek(roomID); ok {
				p = max(p, cur)
			} else {
				b.cache.Add(roomID, p)
			}
			b.mu.Unlock()
			out[at[roomID]] = p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("reading bump positions: %w", err)
		}
	}
	return out, nil
}
