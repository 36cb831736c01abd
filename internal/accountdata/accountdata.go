// Package accountdata stores account data: the per-user client config of the
// spec's "Client Config" module, global (room ID "") or scoped to one room.
//
// Each write takes a position in the one global stream that events share,
// in the same transaction, and wakes the user's syncs after commit. So
// /sync (clientsync) reads account data changes with the same (since, now]
// window as the timeline. clientapi writes through Put; clientsync reads
// through Since.
//
// accountdata imports storage, notifier and mxerr only; it must not import
// room, clientsync or clientapi.
package accountdata

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Store reads and writes account data.
type Store struct {
	db       *storage.DB
	notifier *notifier.Notifier
	// defaults gives the content of global types a user has before the
	// server first writes them (m.push_rules: the default push rules).
	defaults map[string]func(id.UserID) json.RawMessage
}

// Option configures a Store.
type Option func(*Store)

// WithDefault makes global account data of evType read as content(user)
// until a row for it is written: a full /sync then carries it, as
// Synapse's carries m.push_rules for a user who never changed a rule.
func WithDefault(evType string, content func(id.UserID) json.RawMessage) Option {
	return func(s *Store) { s.defaults[evType] = content }
}

// New returns a Store that wakes syncs through n.
func New(db *storage.DB, n *notifier.Notifier, opts ...Option) *Store {
	s := &Store{db: db, notifier: n, defaults: map[string]func(id.UserID) json.RawMessage{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Entry is one account data item as of its last change.
type Entry struct {
	// RoomID is "" for global account data.
	RoomID    id.RoomID
	Type      string
	Content   json.RawMessage
	StreamPos int64
}

// Put sets the user's account data of evType, globally when roomID is "",
// replacing any earlier content. content must be a JSON object; the caller
// validates it. It returns the stream position of the change.
func (s *Store) Put(ctx context.Context, user id.UserID, roomID id.RoomID, evType string, content json.RawMessage) (int64, error) {
	var pos int64
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var err error
		pos, err = s.PutTx(ctx, tx, user, roomID, evType, content)
		return err
	})
	if err != nil {
		return 0, err
	}
	return pos, nil
}

// PutTx is Put inside the caller's write transaction, for account data
// that another package maintains from its own rows (push rules), so that
// both commit together.
func (s *Store) PutTx(ctx context.Context, tx *storage.Tx, user id.UserID, roomID id.RoomID, evType string, content json.RawMessage) (int64, error) {
	pos, err := storage.NextID(ctx, tx, "stream", 1)
	if err == nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO account_data (user_id, room_id, type, content, stream_pos)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos`,
			user.String(), roomID.String(), evType, string(content), pos)
	}
	if err != nil {
		return 0, fmt.Errorf("setting account data %s of %s in room %q: %w", evType, user, roomID, err)
	}
	tx.AfterCommit(func() { s.notifier.Notify(notifier.AccountData, user) })
	return pos, nil
}

// Update replaces the user's account data of evType (global when roomID
// is "") with change(old), where old is the current content or nil when
// there is none. Read and write happen in one write transaction, and
// write transactions are serialised, so concurrent updates (two tags
// added at once) never lose each other's change. An error from change is
// returned as is and nothing is written.
func (s *Store) Update(ctx context.Context, user id.UserID, roomID id.RoomID, evType string, change func(old json.RawMessage) (json.RawMessage, error)) (int64, error) {
	var pos int64
	var changeErr error
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var old sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`,
			user.String(), roomID.String(), evType).Scan(&old)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var oldContent json.RawMessage
		if old.Valid {
			oldContent = json.RawMessage(old.String)
		}
		content, err := change(oldContent)
		if err != nil {
			changeErr = err
			return err
		}
		if pos, err = storage.NextID(ctx, tx, "stream", 1); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO account_data (user_id, room_id, type, content, stream_pos)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos`,
			user.String(), roomID.String(), evType, string(content), pos)
		if err != nil {
			return err
		}
		tx.AfterCommit(func() { s.notifier.Notify(notifier.AccountData, user) })
		return nil
	})
	if changeErr != nil {
		return 0, changeErr
	}
	if err != nil {
		return 0, fmt.Errorf("updating account data %s of %s in room %q: %w", evType, user, roomID, err)
	}
	return pos, nil
}

// Get returns the content of the user's account data of evType (global when
// roomID is ""), or M_NOT_FOUND.
func (s *Store) Get(ctx context.Context, user id.UserID, roomID id.RoomID, evType string) (json.RawMessage, error) {
	var content string
	err := s.db.QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`,
		user.String(), roomID.String(), evType).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		if f := s.defaults[evType]; f != nil && roomID == "" {
			return f(user), nil
		}
		return nil, mxerr.NotFound.With("account data not found")
	}
	if err != nil {
		return nil, fmt.Errorf("loading account data %s of %s in room %q: %w", evType, user, roomID, err)
	}
	return json.RawMessage(content), nil
}

// written reports whether the user has a global row of evType (possibly
// newer than a listing's window).
func (s *Store) written(ctx context.Context, user id.UserID, evType string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM account_data WHERE user_id = $1 AND room_id = '' AND type = $2`,
		user.String(), evType).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking account data %s of %s: %w", evType, user, err)
	}
	return true, nil
}

// Since returns the user's account data, global and per room, that changed
// at stream positions in (after, upto], oldest first. after 0 returns
// everything up to upto. One query serves a whole /sync response.
func (s *Store) Since(ctx context.Context, user id.UserID, after, upto int64) ([]Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT room_id, type, content, stream_pos FROM account_data
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos`, user.String(), after, upto)
	if err != nil {
		return nil, fmt.Errorf("listing account data of %s since %d: %w", user, after, err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var content string
		if err := rows.Scan(&e.RoomID, &e.Type, &content, &e.StreamPos); err != nil {
			return nil, fmt.Errorf("scanning account data of %s: %w", user, err)
		}
		e.Content = json.RawMessage(content)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing account data of %s since %d: %w", user, after, err)
	}
	if after == 0 {
		// A full listing includes the defaults of types never written.
		for evType, f := range s.defaults {
			if !slices.ContainsFunc(out, func(e Entry) bool { return e.RoomID == "" && e.Type == evType }) {
				written, err := s.written(ctx, user, evType)
				if err != nil {
					return nil, err
				}
				if !written {
					out = append(out, Entry{Type: evType, Content: f(user)})
				}
			}
		}
	}
	return out, nil
}
