package room

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
)

// SetAlias maps a local alias to a room. An alias already in use gives
// M_ROOM_IN_USE.
func (s *Service) SetAlias(ctx context.Context, alias id.RoomAlias, roomID id.RoomID, creator id.UserID) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)`,
		alias.String(), roomID.String(), creator.String(), s.now().UnixMilli())
	if storage.IsUniqueViolation(err) {
		return mxerr.RoomInUse.With("room alias %s already exists", alias)
	}
	if err != nil {
		return fmt.Errorf("storing alias %s: %w", alias, err)
	}
	return nil
}

// ResolveAlias returns the room of a local alias, or M_NOT_FOUND.
func (s *Service) ResolveAlias(ctx context.Context, alias id.RoomAlias) (id.RoomID, id.UserID, error) {
	var roomID, creator string
	err := s.db.QueryRowContext(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = $1`, alias.String()).Scan(&roomID, &creator)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", mxerr.NotFound.With("room alias %s not found", alias)
	}
	if err != nil {
		return "", "", fmt.Errorf("resolving alias %s: %w", alias, err)
	}
	return id.RoomID(roomID), id.UserID(creator), nil
}

// DeleteAlias removes a local alias.
func (s *Service) DeleteAlias(ctx context.Context, alias id.RoomAlias) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias.String()); err != nil {
		return fmt.Errorf("deleting alias %s: %w", alias, err)
	}
	return nil
}

// Aliases lists the local aliases of a room.
func (s *Service) Aliases(ctx context.Context, roomID id.RoomID) ([]id.RoomAlias, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias`, roomID.String())
	if err != nil {
		return nil, fmt.Errorf("listing aliases of %s: %w", roomID, err)
	}
	defer rows.Close()
	out := []id.RoomAlias{}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out = append(out, id.RoomAlias(a))
	}
	return out, rows.Err()
}

// MoveAliases points every local alias of the room from at the room to
// (a room upgrade moves them to the replacement room).
func (s *Service) MoveAliases(ctx context.Context, from, to id.RoomID) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE room_aliases SET room_id = $2 WHERE room_id = $1`, from.String(), to.String()); err != nil {
		return fmt.Errorf("moving aliases of %s to %s: %w", from, to, err)
	}
	return nil
}

// Membership of a local user as the sync and listing endpoints see it.
type Membership struct {
	RoomID     id.RoomID
	Membership string
	EventID    id.EventID
	StreamPos  int64
}

// LocalMemberships lists the rooms a local user has a membership in, with
// the stream position of the latest change. changedAfter > 0 limits the list
// to memberships that changed after that position.
func (s *Service) LocalMemberships(ctx context.Context, user id.UserID, changedAfter int64) ([]Membership, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT room_id, membership, event_id, stream_pos FROM local_memberships
		WHERE user_id = $1 AND forgotten = 0 AND stream_pos > $2`, user.String(), changedAfter)
	if err != nil {
		return nil, fmt.Errorf("listing memberships of %s: %w", user, err)
	}
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.RoomID, &m.Membership, &m.EventID, &m.StreamPos); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// LocalMembership returns a local user's membership of one room (ok false
// when they have none) and whether they forgot the room.
func (s *Service) LocalMembership(ctx context.Context, user id.UserID, roomID id.RoomID) (m Membership, forgotten, ok bool, err error) {
	var f int64
	err = s.db.QueryRowContext(ctx, `SELECT room_id, membership, event_id, stream_pos, forgotten FROM local_memberships
		WHERE user_id = $1 AND room_id = $2`, user.String(), roomID.String()).Scan(&m.RoomID, &m.Membership, &m.EventID, &m.StreamPos, &f)
	if errors.Is(err, sql.ErrNoRows) {
		return Membership{}, false, false, nil
	}
	if err != nil {
		return Membership{}, false, false, fmt.Errorf("loading membership of %s in %s: %w", user, roomID, err)
	}
	return m, f != 0, true, nil
}

// Forget hides a room the user has left from their listings and syncs.
func (s *Service) Forget(ctx context.Context, user id.UserID, roomID id.RoomID) error {
	res, err := s.db.ExecContext(ctx, `UPDATE local_memberships SET forgotten = 1 WHERE user_id = $1 AND room_id = $2 AND membership IN ('leave', 'ban')`,
		user.String(), roomID.String())
	if err != nil {
		return fmt.Errorf("forgetting %s: %w", roomID, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		// Syncs cache memberships until told of a change.
		s.notifier.Notify(notifier.Membership, user)
	} else {
		m, err := s.Membership(ctx, roomID, user)
		if err != nil && !errors.Is(err, mxerr.NotFound) {
			return err
		}
		if m == "join" || m == "invite" || m == "knock" {
			return mxerr.Unknown.WithStatus(400).With("you must leave the room before forgetting it")
		}
	}
	return nil
}

// SetVisibility publishes the room in (or removes it from) the public room
// directory.
func (s *Service) SetVisibility(ctx context.Context, roomID id.RoomID, public bool) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE rooms SET is_public = $2 WHERE room_id = $1`, roomID.String(), storage.Bool(public)); err != nil {
		return fmt.Errorf("setting visibility of %s: %w", roomID, err)
	}
	return nil
}
