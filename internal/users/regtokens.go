package users

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Registration tokens gate open registration when registration_requires_token
// is set (spec: client-server-api "Token-authenticated registration"). A
// token may be limited in uses (uses_allowed, NULL for unlimited) and in time
// (expiry_time, ms since the epoch, NULL for never). A use is counted only
// when an account is actually created with the token, in the same
// transaction as the account, so a failed registration never spends a use.

// RegistrationToken is one stored registration token.
type RegistrationToken struct {
	Token string
	// UsesAllowed is how many accounts the token may create; nil is unlimited.
	UsesAllowed *int64
	// Completed counts the accounts created with the token.
	Completed int64
	// Expiry is when the token stops working; the zero time is never.
	Expiry time.Time
}

// ErrRegistrationTokenInvalid is returned when a token is unknown, expired or
// used up at the moment an account would be created with it.
var ErrRegistrationTokenInvalid = mxerr.Unauthorized.With("invalid registration token")

// tokenRE is the spec's opaque identifier grammar, limited to 64 characters.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)

// CreateRegistrationToken stores a new registration token and returns it. An
// empty token generates a random one (26 base32 characters). usesAllowed nil means
// unlimited uses; a zero expiry means the token never expires.
func (s *Service) CreateRegistrationToken(ctx context.Context, token string, usesAllowed *int64, expiry time.Time) (string, error) {
	if token == "" {
		token = rand.Text()
	}
	if !tokenRE.MatchString(token) {
		return "", mxerr.InvalidParam.With("registration tokens are 1-64 characters of A-Z, a-z, 0-9, '.', '_', '~' and '-'")
	}
	if usesAllowed != nil && *usesAllowed < 0 {
		return "", mxerr.InvalidParam.With("uses_allowed must not be negative")
	}
	var exp any
	if !expiry.IsZero() {
		exp = expiry.UnixMilli()
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO registration_tokens (token, uses_allowed, completed, expiry_time) VALUES ($1, $2, 0, $3)`,
		token, usesAllowed, exp)
	if storage.IsUniqueViolation(err) {
		return "", mxerr.InvalidParam.With("registration token already exists")
	}
	if err != nil {
		return "", fmt.Errorf("creating registration token: %w", err)
	}
	return token, nil
}

// RegistrationTokenInfo returns a stored token, or M_NOT_FOUND.
func (s *Service) RegistrationTokenInfo(ctx context.Context, token string) (RegistrationToken, error) {
	var uses, exp sql.NullInt64
	t := RegistrationToken{Token: token}
	err := s.db.QueryRowContext(ctx,
		`SELECT uses_allowed, completed, expiry_time FROM registration_tokens WHERE token = $1`, token).
		Scan(&uses, &t.Completed, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return t, mxerr.NotFound.With("unknown registration token")
	}
	if err != nil {
		return t, fmt.Errorf("loading registration token: %w", err)
	}
	if uses.Valid {
		t.UsesAllowed = &uses.Int64
	}
	if exp.Valid {
		t.Expiry = time.UnixMilli(exp.Int64)
	}
	return t, nil
}

// RegistrationTokenValid reports whether token exists, has not expired and
// has uses left. It is a point-in-time answer: the token may be spent by the
// time it is used.
func (s *Service) RegistrationTokenValid(ctx context.Context, token string) (bool, error) {
	if !tokenRE.MatchString(token) {
		return false, nil
	}
	var n int
	err := s.db.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM registration_tokens WHERE token = $1
		 AND (uses_allowed IS NULL OR completed < uses_allowed)
		 AND (expiry_time IS NULL OR expiry_time > $2)`,
		token, s.now().UnixMilli()).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("checking registration token: %w", err)
	}
	return n > 0, nil
}

// CreateWithRegistrationToken creates an account like Create and spends one
// use of token in the same transaction. When the token is no longer valid it
// returns ErrRegistrationTokenInvalid and creates nothing; when the user ID
// is taken the token keeps its use.
func (s *Service) CreateWithRegistrationToken(ctx context.Context, localpart, password, token string) (id.UserID, error) {
	nu, err := s.prepareAccount(localpart, password, false)
	if err != nil {
		return "", err
	}
	now := nu.createdTS
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1
			 AND (uses_allowed IS NULL OR completed < uses_allowed)
			 AND (expiry_time IS NULL OR expiry_time > $2)`, token, now)
		if err != nil {
			return fmt.Errorf("spending registration token: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("spending registration token: %w", err)
		} else if n == 0 {
			return ErrRegistrationTokenInvalid
		}
		if err := nu.insert(ctx, tx); err != nil {
			return err
		}
		return s.profileChanged(ctx, tx, nu.userID)
	})
	if err != nil {
		return "", err
	}
	s.log.Info("account created with a registration token", "user_id", nu.userID)
	return nu.userID, nil
}
