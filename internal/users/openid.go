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

// OpenIDTokenLifetime is how long an OpenID token proves its user's
// identity; Synapse's is an hour too.
const OpenIDTokenLifetime = time.Hour

// CreateOpenIDToken issues an OpenID token for userID, valid for
// OpenIDTokenLifetime. Only its hash is stored; expired tokens are
// deleted on the way.
func (s *Service) CreateOpenIDToken(ctx context.Context, userID id.UserID) (string, time.Duration, error) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.now()
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM openid_tokens WHERE expires_ts <= $1`, now.UnixMilli()); err != nil {
			return fmt.Errorf("deleting expired OpenID tokens: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`,
			hashToken(token), userID.String(), now.Add(OpenIDTokenLifetime).UnixMilli()); err != nil {
			return fmt.Errorf("storing OpenID token: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", 0, fmt.Errorf("issuing OpenID token for %s: %w", userID, err)
	}
	return token, OpenIDTokenLifetime, nil
}

// OpenIDTokenOwner returns the user an unexpired OpenID token was issued
// to. Unknown and expired tokens, and tokens of deactivated accounts, are
// M_UNKNOWN_TOKEN. The lookup is by hash, so no secret is compared.
func (s *Service) OpenIDTokenOwner(ctx context.Context, token string) (id.UserID, error) {
	var user string
	err := s.db.QueryRowContext(ctx,
		`SELECT t.user_id FROM openid_tokens t JOIN accounts a ON a.user_id = t.user_id
		 WHERE t.token_hash = $1 AND t.expires_ts > $2 AND a.deactivated = 0`,
		hashToken(token), s.now().UnixMilli()).Scan(&user)
	if errors.Is(err, sql.ErrNoRows) {
		return "", mxerr.UnknownToken.With("access token unknown or expired")
	}
	if err != nil {
		return "", fmt.Errorf("looking up OpenID token: %w", err)
	}
	return id.UserID(user), nil
}
