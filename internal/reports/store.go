// Package reports stores what local users report to the server's admins
// (spec: client-server API, "Reporting content"): events, rooms and users.
// clientapi validates a report and decides whether it is stored; the
// admin API reads them back. Reports are written once and never change.
//
// reports imports storage only; it must not import room, users or
// clientapi.
package reports

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// Kind is what a report is about.
type Kind string

// The kinds of report, one per reporting endpoint.
const (
	Event Kind = "event"
	Room  Kind = "room"
	User  Kind = "user"
)

// Report is one stored report.
type Report struct {
	ID       int64
	Kind     Kind
	Received time.Time
	Reporter id.UserID
	// RoomID is set for event and room reports, EventID for event reports.
	RoomID  id.RoomID
	EventID id.EventID
	// Target is the reported user, or the sender of the reported event.
	Target id.UserID
	Reason string
	// Score is the legacy score of an event report, nil when not given.
	Score *int64
}

// Store reads and writes reports.
type Store struct {
	db  *storage.DB
	now func() time.Time
}

// New returns a Store on db.
func New(db *storage.DB) *Store {
	return &Store{db: db, now: time.Now}
}

// Add stores r (its ID and Received are assigned here) and returns its ID.
func (s *Store) Add(ctx context.Context, r Report) (int64, error) {
	var reportID int64
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var err error
		if reportID, err = storage.NextID(ctx, tx, "report", 1); err != nil {
			return err
		}
		var score sql.NullInt64
		if r.Score != nil {
			score = sql.NullInt64{Int64: *r.Score, Valid: true}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO reports
			(report_id, kind, received_ts, reporter, room_id, event_id, target_user_id, reason, score)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			reportID, string(r.Kind), s.now().UnixMilli(), r.Reporter.String(), r.RoomID.String(), r.EventID.String(),
			r.Target.String(), r.Reason, score)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("storing the %s report of %s: %w", r.Kind, r.Reporter, err)
	}
	return reportID, nil
}

// List returns up to limit reports with IDs above after, oldest first.
func (s *Store) List(ctx context.Context, after int64, limit int) ([]Report, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT report_id, kind, received_ts, reporter, room_id, event_id, target_user_id, reason, score
		FROM reports WHERE report_id > $1 ORDER BY report_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	defer rows.Close()
	var out []Report
	for rows.Next() {
		var r Report
		var kind, reporter, roomID, eventID, target string
		var ts int64
		var score sql.NullInt64
		if err := rows.Scan(&r.ID, &kind, &ts, &reporter, &roomID, &eventID, &target, &r.Reason, &score); err != nil {
			return nil, fmt.Errorf("scanning a report: %w", err)
		}
		r.Kind, r.Received = Kind(kind), time.UnixMilli(ts)
		r.Reporter, r.RoomID, r.EventID, r.Target = id.UserID(reporter), id.RoomID(roomID), id.EventID(eventID), id.UserID(target)
		if score.Valid {
			r.Score = &score.Int64
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	return out, nil
}
