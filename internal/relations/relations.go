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

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Thread is the relation type of a thread reply (modules/threading.md).
const Thread = "m.thread"

// Store is the relations index.
type Store struct {
	db *storage.DB
}

// New returns the relations index over db.
func New(db *storage.DB) *Store { return &Store{db: db} }

var _ room.Indexer = (*Store)(nil)

// EventStored records st's relation, if its content has one.
func (s *Store) EventStored(ctx context.Context, tx *storage.Tx, st *room.Stored) error {
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
