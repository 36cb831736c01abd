package room

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/storage"
)

const eventColumns = `e.event_nid, e.event_id, e.stream_pos, e.snapshot_nid, e.rejected, e.soft_failed,
	e.redacted_by, e.txn_device, e.txn_id, e.json, r.room_version, e.outlier, e.replaces_nid`

// scanner is the subset of *sql.Row and *sql.Rows that scanEvent needs.
type scanner interface{ Scan(...any) error }

// scanEvent reads a row of eventColumns.
func scanEvent(sc scanner) (*Stored, error) {
	var st Stored
	var evID, raw, version string
	var rejected, soft, outlier int64
	var redactedBy, txnDev, txnID sql.NullString
	var replaces sql.NullInt64
	if err := sc.Scan(&st.NID, &evID, &st.StreamPos, &st.Snapshot, &rejected, &soft, &redactedBy, &txnDev, &txnID, &raw, &version, &outlier, &replaces); err != nil {
		return nil, err
	}
	ev, err := pdu.ParseTrusted(id.RoomVersion(version), id.EventID(evID), []byte(raw))
	if err != nil {
		return nil, err
	}
	st.Event = ev
	st.Rejected, st.SoftFailed, st.Outlier = rejected != 0, soft != 0, outlier != 0
	// The auth rules skip rejected auth events by this flag.
	ev.PDU.InternalMeta.Rejected = st.Rejected
	st.RedactedBy = id.EventID(redactedBy.String)
	st.TxnDevice, st.TxnID = id.DeviceID(txnDev.String), txnID.String
	st.ReplacesNID, st.ReplacesKnown = replaces.Int64, replaces.Valid
	return &st, nil
}

// Event returns a stored event by ID, or M_NOT_FOUND.
func (s *Service) Event(ctx context.Context, evID id.EventID) (*Stored, error) {
	if ev, ok := s.events.Get(evID); ok {
		return ev, nil
	}
	row := s.db.QueryRowContext(ctx, `SELECT `+eventColumns+` FROM events e JOIN rooms r ON r.room_id = e.room_id WHERE e.event_id = $1`, evID.String())
	ev, err := scanEvent(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mxerr.NotFound.With("event not found")
	}
	if err != nil {
		return nil, fmt.Errorf("loading event %s: %w", evID, err)
	}
	s.events.Add(evID, ev)
	return ev, nil
}

// Events loads several events; missing ones are skipped.
func (s *Service) Events(ctx context.Context, ids []id.EventID) ([]*Stored, error) {
	out := make([]*Stored, 0, len(ids))
	var missing []any
	for _, evID := range ids {
		if ev, ok := s.events.Get(evID); ok {
			out = append(out, ev)
		} else {
			missing = append(missing, evID.String())
		}
	}
	// A bulk load (a big room's state for an initial sync) would evict
	// the recent events every woken sync reads, for events read once.
	cache := len(missing) <= maxCachedPerLoad
	for len(missing) > 0 {
		batch := missing[:min(len(missing), 500)]
		missing = missing[len(batch):]
		rows, err := s.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM events e JOIN rooms r ON r.room_id = e.room_id WHERE e.event_id IN (`+storage.Placeholders(1, len(batch))+`)`, batch...)
		if err != nil {
			return nil, fmt.Errorf("loading events: %w", err)
		}
		for rows.Next() {
			ev, err := scanEvent(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("scanning event: %w", err)
			}
			if cache {
				s.events.Add(ev.ID, ev)
			}
			out = append(out, ev)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// maxCachedPerLoad is the most events one Events call adds to the event
// cache.
const maxCachedPerLoad = 1000

// StateEvents loads the events of a state map.
func (s *Service) StateEvents(ctx context.Context, st State) ([]*Stored, error) {
	ids := make([]id.EventID, 0, len(st))
	for _, ref := range st {
		ids = append(ids, ref.ID)
	}
	return s.Events(ctx, ids)
}

// Range is a window of a room's timeline in stream order. Backfilled
// history has negative stream positions, below everything else.
type Range struct {
	// After and Before bound stream positions exclusively (0 means open).
	After, Before int64
	// Backwards returns the newest events first.
	Backwards bool
	Limit     int
}

// Timeline returns accepted events of the room within r. The query reads
// only the IDs: the events themselves nearly always come from the cache,
// since timelines are mostly recent events, and the rest are loaded in one
// more query.
func (s *Service) Timeline(ctx context.Context, roomID id.RoomID, r Range) ([]*Stored, error) {
	q := `SELECT e.event_id FROM events e
		WHERE e.room_id = $1 AND e.rejected = 0 AND e.soft_failed = 0 AND e.outlier = 0 AND e.stream_pos > $2 AND e.stream_pos < $3`
	before := r.Before
	if before == 0 {
		before = 1 << 62
	}
	after := r.After
	if after == 0 {
		after = -(1 << 62)
	}
	if r.Backwards {
		q += ` ORDER BY e.stream_pos DESC`
	} else {
		q += ` ORDER BY e.stream_pos ASC`
	}
	q += ` LIMIT $4`
	if s.recent != nil {
		if ids, ok := s.recent.timeline(roomID, r); ok {
			return s.eventsInOrder(ctx, ids)
		}
	}
	rows, err := s.db.QueryContext(ctx, q, roomID.String(), after, before, r.Limit)
	if err != nil {
		return nil, fmt.Errorf("loading timeline of %s: %w", roomID, err)
	}
	var ids []id.EventID
	for rows.Next() {
		var evID string
		if err := rows.Scan(&evID); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scanning timeline event: %w", err)
		}
		ids = append(ids, id.EventID(evID))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading timeline of %s: %w", roomID, err)
	}
	return s.eventsInOrder(ctx, ids)
}

// eventsInOrder loads events by ID, keeping the order of ids.
func (s *Service) eventsInOrder(ctx context.Context, ids []id.EventID) ([]*Stored, error) {
	evs, err := s.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]*Stored, len(evs))
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	out := make([]*Stored, 0, len(ids))
	for _, evID := range ids {
		if ev := byID[evID]; ev != nil {
			out = append(out, ev)
		}
	}
	return out, nil
}

// StateChangesBetween returns the state events of the room with stream
// positions in (after, before), oldest first.
func (s *Service) StateChangesBetween(ctx context.Context, roomID id.RoomID, after, before int64) ([]*Stored, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM events e JOIN rooms r ON r.room_id = e.room_id
		WHERE e.room_id = $1 AND e.state_key IS NOT NULL AND e.rejected = 0 AND e.soft_failed = 0
		AND e.stream_pos > $2 AND e.stream_pos < $3 ORDER BY e.stream_pos`, roomID.String(), after, before)
	if err != nil {
		return nil, fmt.Errorf("loading state changes of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []*Stored
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

// RoomsWithEventsSince returns, for each room with events after pos, the
// newest stream position in it.
func (s *Service) RoomsWithEventsSince(ctx context.Context, pos int64) (map[id.RoomID]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT room_id, MAX(stream_pos) FROM events WHERE stream_pos > $1 GROUP BY room_id`, pos)
	if err != nil {
		return nil, fmt.Errorf("finding active rooms: %w", err)
	}
	defer rows.Close()
	out := map[id.RoomID]int64{}
	for rows.Next() {
		var r string
		var p int64
		if err := rows.Scan(&r, &p); err != nil {
			return nil, err
		}
		out[id.RoomID(r)] = p
	}
	return out, rows.Err()
}

// StateAt returns the state before ev (or after it, when after is set).
func (s *Service) StateAt(ctx context.Context, ev *Stored, after bool) (State, error) {
	st, _, err := s.loadSnapshot(ctx, ev.Snapshot)
	if err != nil {
		return nil, err
	}
	if after && ev.IsState() && !ev.Rejected {
		cp := make(State, len(st)+1)
		for k, v := range st {
			cp[k] = v
		}
		cp[ev.Key()] = Ref{NID: ev.NID, ID: ev.ID}
		st = cp
	}
	return st, nil
}
