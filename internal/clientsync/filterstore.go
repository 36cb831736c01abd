package clientsync

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// SaveFilter stores a validated filter definition and returns its ID.
func (s *Service) SaveFilter(ctx context.Context, user id.UserID, raw []byte) (string, error) {
	if _, err := ParseFilter(raw); err != nil {
		return "", err
	}
	var fid int64
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var err error
		if fid, err = storage.NextID(ctx, tx, "filter:"+user.String(), 1); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO filters (user_id, filter_id, filter_json) VALUES ($1, $2, $3)`, user.String(), fid, string(raw))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("saving filter of %s: %w", user, err)
	}
	return strconv.FormatInt(fid, 10), nil
}

// LoadFilter returns the raw JSON of a stored filter, or M_NOT_FOUND.
func (s *Service) LoadFilter(ctx context.Context, user id.UserID, filterID string) ([]byte, error) {
	fid, err := strconv.ParseInt(filterID, 10, 64)
	if err != nil {
		return nil, mxerr.NotFound.With("unknown filter")
	}
	var raw string
	err = s.db.QueryRowContext(ctx, `SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2`, user.String(), fid).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mxerr.NotFound.With("unknown filter")
	}
	if err != nil {
		return nil, fmt.Errorf("loading filter %s of %s: %w", filterID, user, err)
	}
	return []byte(raw), nil
}

// ResolveFilter interprets the filter query parameter of /sync and
// /messages: an inline JSON filter when it starts with '{', else a stored
// filter ID. The returned filter is shared and must not be modified.
func (s *Service) ResolveFilter(ctx context.Context, user id.UserID, param string) (*Filter, error) {
	if param == "" {
		return &Filter{}, nil
	}
	if param[0] == '{' {
		return ParseFilter([]byte(param))
	}
	key := filterKey{user: user, id: param}
	if f, ok := s.filters.Get(key); ok {
		return f, nil
	}
	raw, err := s.LoadFilter(ctx, user, param)
	if err != nil {
		if errors.Is(err, mxerr.NotFound) {
			return nil, mxerr.InvalidParam.With("unknown filter %q", param)
		}
		return nil, err
	}
	f, err := ParseFilter(raw)
	if err != nil {
		return nil, err
	}
	s.filters.Add(key, f)
	return f, nil
}
