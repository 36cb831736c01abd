package e2ee

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// BackupVersion is one key backup version (key_backup.yaml).
type BackupVersion struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int             `json:"count"`
	ETag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// BackupKey is one backed-up session key (KeyBackupData).
type BackupKey struct {
	FirstMessageIndex int64           `json:"first_message_index"`
	ForwardedCount    int64           `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// BackupKeys maps room and session ID to a backed-up key.
type BackupKeys map[id.RoomID]map[string]BackupKey

var errNoBackup = mxerr.NotFound.With("unknown backup version")

// parseVersion reads a version string; any non-number is unknown.
func parseVersion(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, errNoBackup
	}
	return n, nil
}

// CreateBackup creates a new key backup version, which becomes the current
// one, and returns its version.
func (s *Service) CreateBackup(ctx context.Context, user id.UserID, algorithm string, authData json.RawMessage) (string, error) {
	var v int64
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM e2ee_backup_versions WHERE user_id = $1`,
			user.String()).Scan(&v); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO e2ee_backup_versions (user_id, version, algorithm, auth_data) VALUES ($1, $2, $3, $4)`,
			user.String(), v, algorithm, string(authData))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("creating a key backup of %s: %w", user, err)
	}
	return strconv.FormatInt(v, 10), nil
}

// currentBackup returns the newest live version of the user's backup, or 0.
func currentBackup(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}, user id.UserID) (int64, error) {
	var v int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM e2ee_backup_versions WHERE user_id = $1 AND deleted = 0`,
		user.String()).Scan(&v)
	return v, err
}

// Backup returns a backup version, the current one when version is "".
func (s *Service) Backup(ctx context.Context, user id.UserID, version string) (*BackupVersion, error) {
	var v int64
	var err error
	if version == "" {
		if v, err = currentBackup(ctx, s.db, user); err != nil {
			return nil, fmt.Errorf("loading the key backup of %s: %w", user, err)
		}
		if v == 0 {
			return nil, mxerr.NotFound.With("no key backup")
		}
	} else if v, err = parseVersion(version); err != nil {
		return nil, err
	}
	b := &BackupVersion{Version: strconv.FormatInt(v, 10)}
	var auth string
	var etag int64
	err = s.db.QueryRowContext(ctx, `SELECT algorithm, auth_data, etag FROM e2ee_backup_versions
		WHERE user_id = $1 AND version = $2 AND deleted = 0`, user.String(), v).Scan(&b.Algorithm, &auth, &etag)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoBackup
	}
	if err != nil {
		return nil, fmt.Errorf("loading key backup %d of %s: %w", v, user, err)
	}
	b.AuthData, b.ETag = json.RawMessage(auth), strconv.FormatInt(etag, 10)
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2ee_backup_keys WHERE user_id = $1 AND version = $2`,
		user.String(), v).Scan(&b.Count); err != nil {
		return nil, fmt.Errorf("counting keys of backup %d of %s: %w", v, user, err)
	}
	return b, nil
}

// UpdateBackup replaces the auth data of a backup version; the algorithm
// cannot change.
func (s *Service) UpdateBackup(ctx context.Context, user id.UserID, version, algorithm string, authData json.RawMessage) error {
	v, err := parseVersion(version)
	if err != nil {
		return err
	}
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var alg string
		err := tx.QueryRowContext(ctx, `SELECT algorithm FROM e2ee_backup_versions WHERE user_id = $1 AND version = $2 AND deleted = 0`,
			user.String(), v).Scan(&alg)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoBackup
		}
		if err != nil {
			return fmt.Errorf("loading key backup %d of %s: %w", v, user, err)
		}
		if alg != algorithm {
			return mxerr.InvalidParam.With("the algorithm of a backup cannot change")
		}
		_, err = tx.ExecContext(ctx, `UPDATE e2ee_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2`,
			user.String(), v, string(authData))
		return err
	})
}

// DeleteBackup deletes a backup version and its keys.
func (s *Service) DeleteBackup(ctx context.Context, user id.UserID, version string) error {
	v, err := parseVersion(version)
	if err != nil {
		return err
	}
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE e2ee_backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2 AND deleted = 0`,
			user.String(), v)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errNoBackup
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM e2ee_backup_keys WHERE user_id = $1 AND version = $2`, user.String(), v)
		return err
	})
}

// PutBackupKeys stores keys in the current backup version, keeping an
// existing key when it is better (spec: verified beats unverified, then a
// lower first_message_index, then a lower forwarded_count). It returns the
// new etag and key count.
func (s *Service) PutBackupKeys(ctx context.Context, user id.UserID, version string, keys BackupKeys) (string, int, error) {
	v, err := parseVersion(version)
	if err != nil {
		return "", 0, err
	}
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		cur, err := currentBackup(ctx, tx, user)
		if err != nil {
			return err
		}
		if cur == 0 {
			return errNoBackup
		}
		if cur != v {
			return errWrongVersion.With("version %d is not the current backup version", v).
				WithField("current_version", strconv.FormatInt(cur, 10))
		}
		changed := false
		for roomID, sessions := range keys {
			for sid, k := range sessions {
				var old BackupKey
				err := tx.QueryRowContext(ctx, `SELECT first_message_index, forwarded_count, is_verified != 0 FROM e2ee_backup_keys
					WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`,
					user.String(), v, roomID.String(), sid).Scan(&old.FirstMessageIndex, &old.ForwardedCount, &old.IsVerified)
				switch {
				case errors.Is(err, sql.ErrNoRows):
				case err != nil:
					return err
				case !better(k, old):
					continue
				}
				changed = true
				if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_backup_keys (user_id, version, room_id, session_id,
					first_message_index, forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
					ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index,
					forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
					user.String(), v, roomID.String(), sid, k.FirstMessageIndex, k.ForwardedCount, storage.Bool(k.IsVerified),
					string(k.SessionData)); err != nil {
					return err
				}
			}
		}
		if changed {
			_, err = tx.ExecContext(ctx, `UPDATE e2ee_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, user.String(), v)
		}
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("backing up keys of %s: %w", user, err)
	}
	return s.backupState(ctx, user, v)
}

// better reports whether a new backed-up key should replace old.
func better(k, old BackupKey) bool {
	if k.IsVerified != old.IsVerified {
		return k.IsVerified
	}
	if k.FirstMessageIndex != old.FirstMessageIndex {
		return k.FirstMessageIndex < old.FirstMessageIndex
	}
	return k.ForwardedCount < old.ForwardedCount
}

// backupState returns the etag and key count of a backup version.
func (s *Service) backupState(ctx context.Context, user id.UserID, v int64) (string, int, error) {
	b, err := s.Backup(ctx, user, strconv.FormatInt(v, 10))
	if err != nil {
		return "", 0, err
	}
	return b.ETag, b.Count, nil
}

// GetBackupKeys returns the keys of a backup version, all of them, of one
// room (sessionID ""), or one session.
func (s *Service) GetBackupKeys(ctx context.Context, user id.UserID, version string, roomID id.RoomID, sessionID string) (BackupKeys, error) {
	if _, err := s.Backup(ctx, user, version); err != nil {
		return nil, err
	}
	v, _ := parseVersion(version)
	rows, err := s.db.QueryContext(ctx, `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
		FROM e2ee_backup_keys WHERE user_id = $1 AND version = $2 AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4)`,
		user.String(), v, roomID.String(), sessionID)
	if err != nil {
		return nil, fmt.Errorf("loading backed-up keys of %s: %w", user, err)
	}
	defer rows.Close()
	out := BackupKeys{}
	for rows.Next() {
		var r id.RoomID
		var sid, data string
		var verified int64
		var k BackupKey
		if err := rows.Scan(&r, &sid, &k.FirstMessageIndex, &k.ForwardedCount, &verified, &data); err != nil {
			return nil, err
		}
		k.IsVerified, k.SessionData = verified != 0, json.RawMessage(data)
		if out[r] == nil {
			out[r] = map[string]BackupKey{}
		}
		out[r][sid] = k
	}
	return out, rows.Err()
}

// DeleteBackupKeys deletes keys of a backup version: all, of one room
// (sessionID ""), or one session. It returns the new etag and count.
func (s *Service) DeleteBackupKeys(ctx context.Context, user id.UserID, version string, roomID id.RoomID, sessionID string) (string, int, error) {
	if _, err := s.Backup(ctx, user, version); err != nil {
		return "", 0, err
	}
	v, _ := parseVersion(version)
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM e2ee_backup_keys WHERE user_id = $1 AND version = $2
			AND ($3 = '' OR room_id = $3) AND ($4 = '' OR session_id = $4)`, user.String(), v, roomID.String(), sessionID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			_, err = tx.ExecContext(ctx, `UPDATE e2ee_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, user.String(), v)
		}
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("deleting backed-up keys of %s: %w", user, err)
	}
	return s.backupState(ctx, user, v)
}
