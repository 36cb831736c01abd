package users

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Tokens are what a login or a refresh issues.
type Tokens struct {
	AccessToken string
	DeviceID    id.DeviceID
	// RefreshToken and ExpiresIn are set when the client asked for a
	// refresh token: the access token is valid for ExpiresIn.
	RefreshToken string
	ExpiresIn    time.Duration
}

// Default token lifetimes, Synapse's.
const (
	defaultAccessLifetime = 5 * time.Minute
)

// WithTokenLifetimes sets how long a refreshable access token is valid
// (access) and how long a refresh token may be used (refresh; 0: until
// it is used).
func WithTokenLifetimes(access, refresh time.Duration) Option {
	return func(s *Service) { s.accessLifetime, s.refreshLifetime = access, refresh }
}

// newSecret returns a random token with a recognisable prefix.
func newSecret(prefix string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// deleteDeviceTokens revokes every access and refresh token of a device.
func deleteDeviceTokens(ctx context.Context, tx *storage.Tx, user id.UserID, dev id.DeviceID) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2`, user.String(), dev.String()); err != nil {
		return fmt.Errorf("deleting tokens of device %s: %w", dev, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2`, user.String(), dev.String()); err != nil {
		return fmt.Errorf("deleting refresh tokens of device %s: %w", dev, err)
	}
	return nil
}

// issue stores a new access token for a device, with a refresh token when
// refreshable; prev is the refresh token the new one replaces ("" for a
// login).
func (s *Service) issue(ctx context.Context, tx *storage.Tx, user id.UserID, dev id.DeviceID, refreshable bool, prev string, now time.Time) (Tokens, error) {
	t := Tokens{AccessToken: newSecret("myl_"), DeviceID: dev}
	var expires, refreshHash any
	if refreshable {
		t.RefreshToken = newSecret("mylr_")
		t.ExpiresIn = s.accessLifetime
		if t.ExpiresIn <= 0 {
			t.ExpiresIn = defaultAccessLifetime
		}
		expires = now.Add(t.ExpiresIn).UnixMilli()
		refreshHash = hashToken(t.RefreshToken)
		var refreshExpires, prevHash any
		if s.refreshLifetime > 0 {
			refreshExpires = now.Add(s.refreshLifetime).UnixMilli()
		}
		if prev != "" {
			prevHash = prev
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (token_hash, user_id, device_id, expires_ts, prev_hash)
			VALUES ($1, $2, $3, $4, $5)`, refreshHash, user.String(), dev.String(), refreshExpires, prevHash); err != nil {
			return t, fmt.Errorf("storing refresh token: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_hash) VALUES ($1, $2, $3, $4, $5, $6)`,
		hashToken(t.AccessToken), user.String(), dev.String(), now.UnixMilli(), expires, refreshHash); err != nil {
		return t, fmt.Errorf("storing token: %w", err)
	}
	return t, nil
}

// errUnknownRefresh is the spec's answer to a refresh token that is not
// (or no longer) valid: the client must log in again.
var errUnknownRefresh = mxerr.UnknownToken.With("unknown refresh token").WithField("soft_logout", false)

// Refresh exchanges a refresh token for a new access token and refresh
// token (POST /refresh). The access tokens issued with the old refresh
// token are revoked at once; the old refresh token itself stays usable
// until the new access or refresh token is first used, so a client that
// lost the answer can retry.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	hash := hashToken(refreshToken)
	now := s.now()
	var t Tokens
	var user id.UserID
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var u, dev string
		var expires sql.NullInt64
		var prev sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT user_id, device_id, expires_ts, prev_hash FROM refresh_tokens WHERE token_hash = $1`, hash).
			Scan(&u, &dev, &expires, &prev)
		if errors.Is(err, sql.ErrNoRows) {
			return errUnknownRefresh
		}
		if err != nil {
			return fmt.Errorf("looking up refresh token: %w", err)
		}
		user = id.UserID(u)
		if expires.Valid && now.UnixMilli() >= expires.Int64 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash = $1`, hash); err != nil {
				return fmt.Errorf("deleting an expired refresh token: %w", err)
			}
			return errUnknownRefresh
		}
		var deact int64
		if err := tx.QueryRowContext(ctx, `SELECT deactivated FROM accounts WHERE user_id = $1`, u).Scan(&deact); err != nil || deact != 0 {
			return errUnknownRefresh
		}
		// Using this token retires the one it replaced.
		if prev.Valid {
			if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash = $1`, prev.String); err != nil {
				return fmt.Errorf("revoking the previous refresh token: %w", err)
			}
		}
		// The access tokens of this refresh token, and what earlier
		// refreshes of it issued that was never used, go.
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE refresh_hash = $1
			OR refresh_hash IN (SELECT token_hash FROM refresh_tokens WHERE prev_hash = $1)`, hash); err != nil {
			return fmt.Errorf("revoking refreshed access tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE prev_hash = $1`, hash); err != nil {
			return fmt.Errorf("revoking unused refresh tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET prev_hash = NULL WHERE token_hash = $1`, hash); err != nil {
			return fmt.Errorf("updating the refresh token: %w", err)
		}
		t, err = s.issue(ctx, tx, user, id.DeviceID(dev), true, hash, now)
		return err
	})
	if user != "" {
		s.tokens.forgetUser(user)
	}
	if err != nil {
		return Tokens{}, err
	}
	return t, nil
}

// retirePredecessor deletes the refresh token that refreshHash replaced,
// on the first use of refreshHash's access token.
func (s *Service) retirePredecessor(ctx context.Context, refreshHash string) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash = (SELECT prev_hash FROM refresh_tokens WHERE token_hash = $1)`, refreshHash); err != nil {
			return fmt.Errorf("revoking the previous refresh token: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET prev_hash = NULL WHERE token_hash = $1`, refreshHash); err != nil {
			return fmt.Errorf("updating the refresh token: %w", err)
		}
		return nil
	})
}

// CreateLoginToken issues a one-time token that logs user in with
// m.login.token within ttl (POST /login/get_token).
func (s *Service) CreateLoginToken(ctx context.Context, user id.UserID, ttl time.Duration) (string, error) {
	token := newSecret("myll_")
	now := s.now()
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM login_tokens WHERE expires_ts <= $1`, now.UnixMilli()); err != nil {
			return fmt.Errorf("deleting expired login tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`,
			hashToken(token), user.String(), now.Add(ttl).UnixMilli()); err != nil {
			return fmt.Errorf("storing a login token: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// UseLoginToken spends a login token and returns its user: each token
// logs in once. An unknown, spent or expired token is 403 M_FORBIDDEN, as
// in Synapse.
func (s *Service) UseLoginToken(ctx context.Context, token string) (id.UserID, error) {
	var user string
	var expires int64
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT user_id, expires_ts FROM login_tokens WHERE token_hash = $1`, hashToken(token)).Scan(&user, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return mxerr.Forbidden.With("invalid login token")
		}
		if err != nil {
			return fmt.Errorf("looking up a login token: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM login_tokens WHERE token_hash = $1`, hashToken(token)); err != nil {
			return fmt.Errorf("spending a login token: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if s.now().UnixMilli() >= expires {
		return "", mxerr.Forbidden.With("the login token has expired")
	}
	return id.UserID(user), nil
}
