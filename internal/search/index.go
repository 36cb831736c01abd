// Package search owns server-side search (spec: client-server API,
// "Server Side Search", POST /search): the full-text index of the event
// fields the spec names, kept in each engine's own full-text facility
// (storage.FullText: FTS5 on SQLite, tsvector with a GIN index on
// PostgreSQL), and the room_events queries over it, which return only
// what history visibility lets the user see.
//
// The index is written by room's persist path through room.Indexer, in
// the transaction that stores each accepted event, and a redaction
// removes its target in the redaction's transaction: room does not import
// this package. search imports room and storage only; clientapi renders
// its results.
package search

import (
	"context"
	"fmt"
	"strings"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
)

// The spec's keys (search.yaml, room_events.keys), each found in one
// event type.
const (
	KeyBody  = "content.body"
	KeyName  = "content.name"
	KeyTopic = "content.topic"
)

// Keys lists the keys searched when a request names none.
var Keys = []string{KeyBody, KeyName, KeyTopic}

// Index is the full-text index of events (table event_search).
type Index struct {
	db *storage.DB
	ft storage.FullText
}

// NewIndex returns the index over db.
func NewIndex(db *storage.DB) *Index {
	return &Index{db: db, ft: db.FullText("event_search", "event_nid", "room_id", "field")}
}

var _ room.Indexer = (*Index)(nil)

// EventStored indexes the searchable text of st, if it has any. Encrypted
// events (m.room.encrypted) have none the server can read.
func (ix *Index) EventStored(ctx context.Context, tx *storage.Tx, st *room.Stored) error {
	field, text := Text(st.Type, st.StateKey, st.Content)
	if text == "" {
		return nil
	}
	// Queued: persist pipelines its statements on PostgreSQL.
	if err := tx.Queue(ctx, ix.ft.Insert(), st.NID, text, st.RoomID().String(), field); err != nil {
		return fmt.Errorf("indexing text of %s: %w", st.ID, err)
	}
	return nil
}

// EventRedacted drops target from the index: a redacted event has no
// content left to find, and must not be found by the words it lost.
func (ix *Index) EventRedacted(ctx context.Context, tx *storage.Tx, target id.EventID) error {
	if err := tx.Queue(ctx, `DELETE FROM event_search WHERE `+ix.ft.Key("")+` IN (SELECT event_nid FROM events WHERE event_id = $1)`,
		target.String()); err != nil {
		return fmt.Errorf("unindexing %s: %w", target, err)
	}
	return nil
}

// Text is the searchable text of an event and the key it is found under:
// content.body of m.room.message,
// content.name of m.room.name, and content.topic of m.room.topic with the
// text/plain body of its m.topic when that differs (spec: "room_events").
// Name and topic count only as room state (empty state key); a message
// only as a timeline event. NULs become spaces (as in Synapse):
// PostgreSQL text cannot hold them.
func Text(evType string, stateKey *string, content []byte) (field, text string) {
	var parts []string
	switch evType {
	case "m.room.message":
		if stateKey == nil {
			field, parts = KeyBody, append(parts, stringAt(content, "body"))
		}
	case "m.room.name":
		if stateKey != nil && *stateKey == "" {
			field, parts = KeyName, append(parts, stringAt(content, "name"))
		}
	case "m.room.topic":
		if stateKey != nil && *stateKey == "" {
			field = KeyTopic
			topic := stringAt(content, "topic")
			parts = append(parts, topic)
			for _, r := range gjson.GetBytes(content, `m\.topic.m\.text`).Array() {
				if m := r.Get("mimetype"); (m.Type == gjson.Null || m.Str == "text/plain") && r.Get("body").Type == gjson.String {
					if b := r.Get("body").Str; b != topic {
						parts = append(parts, b)
					}
					break
				}
			}
		}
	}
	return field, strings.TrimSpace(strings.ReplaceAll(strings.Join(parts, " "), "\x00", " "))
}

// stringAt returns content's top-level string field, or "".
func stringAt(content []byte, field string) string {
	v := gjson.GetBytes(content, field)
	if v.Type != gjson.String {
		return ""
	}
	return v.Str
}
