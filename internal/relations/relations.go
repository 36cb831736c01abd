// Package relations indexes the relationships between events (spec:
// client-server API, "Forming relationships between events": threads,
// edits, references, annotations) and answers the queries of /relations,
// /threads and bundled aggregations from that index alone.
//
// The index is written by room's persist path through room.Indexer, in
// the transaction that stores each accepted event: room does not import
// this package.
package relations

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Thread is the relation type of a thread reply (modules/threading.md).
const Thread = "m.thread"

// Store is the relations index.
type Store struct {
	db     *storage.DB
	server string
	// mark is a stream position at or above that of every event that may
	// have children in the index: every child's own position (a child
	// comes after its parent, unless the parent arrived later over
	// federation), and the position of every event received from another
	// server (whose children may have arrived first). Events above it
	// have no aggregations, so a woken /sync of new messages needs no
	// index read. It only rises; markOnce raises it once to the newest
	// position stored before this process started.
	mark     atomic.Int64
	markOnce sync.Once
	markErr  error
}

// New returns the relations index over db, for the server named
// serverName (whose own new events cannot have children yet).
func New(db *storage.DB, serverName string) *Store { return &Store{db: db, server: serverName} }

// raise lifts the mark to at least pos.
func (s *Store) raise(pos int64) {
	for {
		cur := s.mark.Load()
		if pos <= cur || s.mark.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// markAt returns the mark, having first raised it to the newest stream
// position stored before this process started.
func (s *Store) markAt(ctx context.Context) (int64, error) {
	s.markOnce.Do(func() {
		var pos int64
		s.markErr = s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(stream_pos), 0) FROM events`).Scan(&pos)
		if s.markErr == nil {
			s.raise(pos)
		}
	})
	return s.mark.Load(), s.markErr
}

var _ room.Indexer = (*Store)(nil)

// EventStored records st's relation, if its content has one.
func (s *Store) EventStored(ctx context.Context, tx *storage.Tx, st *room.Stored) error {
	if st.Sender.Homeserver() != s.server {
		// Its position is known by commit at the latest.
		tx.BeforePublish(func() { s.raise(st.StreamPos) })
	}
	rel := gjson.GetBytes(st.Content, "m\\.relates_to")
	if !rel.IsObject() {
		return nil
	}
	relType, parent := rel.Get("rel_type"), rel.Get("event_id")
	if relType.Type != gjson.String || parent.Type != gjson.String || relType.Str == "" || !strings.HasPrefix(parent.Str, "$") {
		return nil
	}
	// A NUL cannot be stored in PostgreSQL text, and names no real
	// relation type or event.
	if id.EventID(parent.Str) == st.ID || strings.ContainsRune(relType.Str+parent.Str, 0) {
		return nil
	}
	// The parent was committed before its child was built (or comes from
	// another server, see above), so the newest committed position covers
	// it: raised now, before the child commits, no reader sees the child
	// while the mark lies below its parent. The child's own position
	// follows once it is known (before readers see it on SQLite; on
	// PostgreSQL with the after-commit hooks).
	if cur, err := s.db.CurrentID(ctx, "stream"); err == nil {
		s.raise(cur)
	} else {
		s.raise(1<<63 - 1)
	}
	tx.BeforePublish(func() { s.raise(st.StreamPos) })
	// Queued: persist pipelines its statements on PostgreSQL.
	if err := tx.Queue(ctx, `INSERT INTO event_relations (child_nid, child_id, room_id, parent_id, rel_type, child_type, sender)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
		st.NID, st.ID.String(), st.RoomID().String(), parent.Str, relType.Str, st.Type, st.Sender.String()); err != nil {
		return fmt.Errorf("indexing relation of %s: %w", st.ID, err)
	}
	return nil
}

// EventRedacted drops target's relation: a redacted event has no
// m.relates_to, so it leaves every aggregation.
func (s *Store) EventRedacted(ctx context.Context, tx *storage.Tx, target id.EventID) error {
	if err := tx.Queue(ctx, `DELETE FROM event_relations WHERE child_id = $1`, target.String()); err != nil {
		return fmt.Errorf("unindexing relation of %s: %w", target, err)
	}
	return nil
}
