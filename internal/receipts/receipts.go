// Package receipts stores the read receipts of the spec's "Receipts" module:
// per room, receipt type, user and thread, the one event the user has read
// up to.
//
// A receipt write is an upsert that takes a new position in the one global
// stream shared with events, in the same transaction, and wakes the room's
// local members after commit (only the sender for m.read.private, which no
// one else may see). /sync (clientsync) reads receipts of the user's rooms
// in its (since, now] window and renders them as m.receipt ephemeral
// events.
//
// Flow: clientapi (POST /receipt, /read_markers) → Store → notifier →
// clientsync. receipts imports storage and notifier; it must not import
// room, clientsync or clientapi (it is handed a JoinedFunc). Federation
// (m.receipt EDUs) is not wired yet.
package receipts

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Receipt types a client may send.
const (
	// Read is the public read receipt.
	Read = "m.read"
	// ReadPrivate is seen only by the user who sent it.
	ReadPrivate = "m.read.private"
)

// JoinedFunc lists the local users joined to a room: the users to wake when
// a public receipt arrives (room.Service.LocalJoined).
type JoinedFunc func(ctx context.Context, roomID id.RoomID) ([]id.UserID, error)

// Store reads and writes receipts.
type Store struct {
	db       *storage.DB
	notifier *notifier.Notifier
	joined   JoinedFunc
	now      func() time.Time
	onRead   []ReadHook
}

// ReadHook is told of every stored receipt in the transaction that stores
// it, so that what it derives (notification counts) commits with the
// receipt. An error aborts the transaction.
type ReadHook func(ctx context.Context, tx *storage.Tx, r Receipt) error

// Option configures a Store.
type Option func(*Store)

// WithReadHook calls h for every receipt stored.
func WithReadHook(h ReadHook) Option { return func(s *Store) { s.onRead = append(s.onRead, h) } }

// New returns a Store that wakes the users joined lists through n.
func New(db *storage.DB, n *notifier.Notifier, joined JoinedFunc, opts ...Option) *Store {
	s := &Store{db: db, notifier: n, joined: joined, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Receipt is one stored receipt.
type Receipt struct {
	RoomID id.RoomID
	Type   string
	User   id.UserID
	// ThreadID is "" for an unthreaded receipt, "main" or a thread root's
	// event ID for a threaded one.
	ThreadID  string
	EventID   id.EventID
	TS        int64 // milliseconds since the epoch, set by the server
	StreamPos int64
}

// Put records that user has read up to eventID in roomID, replacing their
// earlier receipt of the same type and thread. It returns the stream
// position of the change.
func (s *Store) Put(ctx context.Context, roomID id.RoomID, receiptType string, user id.UserID, threadID string, eventID id.EventID) (int64, error) {
	wake := []id.UserID{user}
	if receiptType != ReadPrivate {
		// Listed before the transaction: the list takes the room's lock,
		// which must never be taken inside the storage write order.
		var err error
		if wake, err = s.joined(ctx, roomID); err != nil {
			return 0, fmt.Errorf("listing members of %s to wake for a receipt: %w", roomID, err)
		}
	}
	var pos int64
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var err error
		if pos, err = storage.NextID(ctx, tx, "stream", 1); err != nil {
			return err
		}
		ts := s.now().UnixMilli()
		_, err = tx.ExecContext(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (room_id, receipt_type, user_id, thread_id)
			DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_pos = excluded.stream_pos`,
			roomID.String(), receiptType, user.String(), threadID, eventID.String(), ts, pos)
		if err != nil {
			return err
		}
		r := Receipt{RoomID: roomID, Type: receiptType, User: user, ThreadID: threadID, EventID: eventID, TS: ts, StreamPos: pos}
		for _, h := range s.onRead {
			if err := h(ctx, tx, r); err != nil {
				return err
			}
		}
		tx.AfterCommit(func() { s.notifier.Notify(notifier.Receipts, wake...) })
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storing %s receipt of %s for %s in %s: %w", receiptType, user, eventID, roomID, err)
	}
	return pos, nil
}

// maxRoomsPerQuery bounds the IN list of one query, well under both
// engines' limits on bound parameters.
const maxRoomsPerQuery = 500

// Since returns, per room, the receipts of rooms that changed at stream
// positions in (after, upto] and that viewer may see: every public receipt
// and viewer's own private ones. after 0 returns every receipt up to upto.
// One call serves a whole /sync response.
func (s *Store) Since(ctx context.Context, rooms []id.RoomID, viewer id.UserID, after, upto int64) (map[id.RoomID][]Receipt, error) {
	out := make(map[id.RoomID][]Receipt)
	for start := 0; start < len(rooms); start += maxRoomsPerQuery {
		batch := rooms[start:min(start+maxRoomsPerQuery, len(rooms))]
		args := []any{after, upto, ReadPrivate, viewer.String()}
		first := len(args) + 1
		for _, r := range batch {
			args = append(args, r.String())
		}
		if err := s.since(ctx, out, args, storage.Placeholders(first, len(batch))); err != nil {
			return nil, fmt.Errorf("listing receipts for %s since %d: %w", viewer, after, err)
		}
	}
	return out, nil
}

func (s *Store) since(ctx context.Context, out map[id.RoomID][]Receipt, args []any, rooms string) error {
	rows, err := s.db.QueryContext(ctx, `SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos
		FROM receipts WHERE room_id IN (`+rooms+`) AND stream_pos > $1 AND stream_pos <= $2
		AND (receipt_type <> $3 OR user_id = $4) ORDER BY stream_pos`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r Receipt
		if err := rows.Scan(&r.RoomID, &r.Type, &r.User, &r.ThreadID, &r.EventID, &r.TS, &r.StreamPos); err != nil {
			return err
		}
		out[r.RoomID] = append(out[r.RoomID], r)
	}
	return rows.Err()
}

// receiptInfo is the per-user value of an m.receipt event.
type receiptInfo struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// Event renders receipts of one room as a single m.receipt event:
// {"type":"m.receipt","content":{eventID:{receiptType:{userID:{ts, thread_id?}}}}}.
// When a user has two receipts of one type on the same event (in different
// threads), the later one wins, since the format has room for one.
func Event(rs []Receipt) json.RawMessage {
	content := map[id.EventID]map[string]map[id.UserID]receiptInfo{}
	for _, r := range rs {
		byType := content[r.EventID]
		if byType == nil {
			byType = map[string]map[id.UserID]receiptInfo{}
			content[r.EventID] = byType
		}
		if byType[r.Type] == nil {
			byType[r.Type] = map[id.UserID]receiptInfo{}
		}
		byType[r.Type][r.User] = receiptInfo{TS: r.TS, ThreadID: r.ThreadID}
	}
	raw, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Content any    `json:"content"`
	}{"m.receipt", content})
	return raw
}
