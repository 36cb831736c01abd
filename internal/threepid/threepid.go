// Package threepid owns third-party identifiers of local accounts: the
// validation of e-mail addresses by a mailed link or code (the spec's
// requestToken endpoints and the m.login.email.identity stage), and the
// addresses bound to accounts, by which users log in and reset
// passwords.
//
// A validation session is (sid, client_secret, address): requestToken
// creates it and mails a token; the link or the token posted to the
// submit URL validates it; a validated session is then spent by whatever
// asked for it (binding the address to an account, a registration, a
// password reset). threepid imports storage, email and mxerr; it knows
// nothing of HTTP routing or UIA.
package threepid

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/email"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// MediumEmail is the only medium validated here.
const MediumEmail = "email"

// Purpose says what a validation is for; it picks the mail's wording.
type Purpose string

// The purposes of the requestToken endpoints.
const (
	Register      Purpose = "register"
	AddToAccount  Purpose = "add"
	PasswordReset Purpose = "password_reset"
)

// ThreePID is an identifier bound to an account.
type ThreePID struct {
	Medium      string `json:"medium"`
	Address     string `json:"address"`
	ValidatedAt int64  `json:"validated_at"`
	AddedAt     int64  `json:"added_at"`
}

// Service validates and stores third-party identifiers.
type Service struct {
	db       *storage.DB
	mail     *email.Sender
	lifetime time.Duration
	now      func() time.Time
}

// New returns a Service that mails through sender (nil: e-mail is off,
// and RequestEmailToken refuses).
func New(db *storage.DB, sender *email.Sender, lifetime time.Duration) *Service {
	return &Service{db: db, mail: sender, lifetime: lifetime, now: time.Now}
}

// EmailEnabled reports whether addresses can be validated.
func (s *Service) EmailEnabled() bool { return s.mail != nil }

// CanonicalEmail lower-cases an address, as Synapse does, so that one
// mailbox is one identifier.
func CanonicalEmail(addr string) (string, error) {
	a, err := mail.ParseAddress(strings.TrimSpace(addr))
	if err != nil || a.Name != "" || !strings.Contains(a.Address, "@") {
		return "", mxerr.InvalidParam.With("%q is not an e-mail address", addr)
	}
	return strings.ToLower(a.Address), nil
}

func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:])
}

// newToken is what the user copies or clicks: short enough to type.
func newToken() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	var b [8]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// RequestEmailToken starts (or continues) the validation of address for
// purpose and mails a token, unless the client already made this
// send_attempt for the same address and secret, in which case it returns
// the same sid and mails nothing (spec: requestToken). validateURL is the
// page that validates a session from the mail's link; its query gets
// sid, client_secret and token.
func (s *Service) RequestEmailToken(ctx context.Context, purpose Purpose, clientSecret, address string, sendAttempt int64, validateURL string) (string, error) {
	if s.mail == nil {
		return "", mxerr.ThreepidDenied.With("this server sends no e-mail")
	}
	now := s.now()
	var sid string
	var lastAttempt int64
	err := s.db.QueryRowContext(ctx, `SELECT sid, send_attempt FROM threepid_sessions
		WHERE medium = $1 AND address = $2 AND client_secret = $3 AND expires_ts > $4 ORDER BY expires_ts DESC LIMIT 1`,
		MediumEmail, address, clientSecret, now.UnixMilli()).Scan(&sid, &lastAttempt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("looking up the validation of %s: %w", address, err)
	}
	if sid != "" && sendAttempt <= lastAttempt {
		return sid, nil
	}
	token := newToken()
	if sid == "" {
		sid = rand.Text()
	}
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM threepid_sessions WHERE expires_ts <= $1`, now.UnixMilli()); err != nil {
			return fmt.Errorf("deleting expired validations: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO threepid_sessions (sid, client_secret, medium, address, token_hash, send_attempt, expires_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (sid) DO UPDATE SET token_hash = excluded.token_hash, send_attempt = excluded.send_attempt, expires_ts = excluded.expires_ts`,
			sid, clientSecret, MediumEmail, address, hashToken(token), sendAttempt, now.Add(s.lifetime).UnixMilli())
		if err != nil {
			return fmt.Errorf("storing the validation of %s: %w", address, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	link := validateURL + "?" + url.Values{"sid": {sid}, "client_secret": {clientSecret}, "token": {token}}.Encode()
	if err := s.mail.Send(ctx, validationMail(s.mail.AppName(), purpose, address, link, token, s.lifetime)); err != nil {
		return "", mxerr.Unknown.WithStatus(500).With("the validation mail could not be sent").Wrap(err)
	}
	return sid, nil
}

// validationMail words the mail for purpose.
func validationMail(app string, purpose Purpose, to, link, token string, lifetime time.Duration) email.Message {
	var subject, what string
	switch purpose {
	case PasswordReset:
		subject, what = "["+app+"] Password reset", "Someone asked to reset the password of the "+app+" account with this address."
	case Register:
		subject, what = "["+app+"] Confirm your email address", "You are registering an account on "+app+" with this address."
	default:
		subject, what = "["+app+"] Validate your email", "Someone asked to add this address to an account on "+app+"."
	}
	body := what + "\n\nTo confirm, open this link:\n\n" + link + "\n\nor enter this code in your client: " + token +
		"\n\nIt is valid for " + lifetime.String() + ". If this was not you, ignore this mail.\n"
	return email.Message{To: to, Subject: subject, Body: body}
}

// Validate marks a session validated when token is its token.
func (s *Service) Validate(ctx context.Context, sid, clientSecret, token string) error {
	now := s.now()
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var secret, hash string
		var expires int64
		err := tx.QueryRowContext(ctx, `SELECT client_secret, token_hash, expires_ts FROM threepid_sessions WHERE sid = $1`, sid).
			Scan(&secret, &hash, &expires)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && (subtle.ConstantTimeCompare([]byte(secret), []byte(clientSecret)) != 1 ||
			subtle.ConstantTimeCompare([]byte(hash), []byte(hashToken(strings.ToUpper(strings.TrimSpace(token))))) != 1)) {
			return mxerr.ThreepidAuthFailed.With("unknown session or wrong token")
		}
		if err != nil {
			return fmt.Errorf("looking up a validation session: %w", err)
		}
		if now.UnixMilli() >= expires {
			return mxerr.ThreepidAuthFailed.With("the validation has expired; ask for a new mail")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE threepid_sessions SET validated_ts = $2 WHERE sid = $1 AND validated_ts IS NULL`, sid, now.UnixMilli()); err != nil {
			return fmt.Errorf("validating a session: %w", err)
		}
		return nil
	})
}

// Validated returns the medium, address and validation time of a
// validated session; M_THREEPID_AUTH_FAILED when it is unknown, another
// secret's, expired or not validated yet.
func (s *Service) Validated(ctx context.Context, sid, clientSecret string) (ThreePID, error) {
	var tp ThreePID
	var secret string
	var validated sql.NullInt64
	var expires int64
	err := s.db.QueryRowContext(ctx, `SELECT client_secret, medium, address, validated_ts, expires_ts FROM threepid_sessions WHERE sid = $1`, sid).
		Scan(&secret, &tp.Medium, &tp.Address, &validated, &expires)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && subtle.ConstantTimeCompare([]byte(secret), []byte(clientSecret)) != 1) {
		return tp, mxerr.ThreepidAuthFailed.With("no validated 3pid session found")
	}
	if err != nil {
		return tp, fmt.Errorf("looking up a validation session: %w", err)
	}
	if !validated.Valid {
		return tp, mxerr.ThreepidAuthFailed.With("the address has not been validated yet")
	}
	if s.now().UnixMilli() >= expires {
		return tp, mxerr.ThreepidAuthFailed.With("the validation has expired")
	}
	tp.ValidatedAt = validated.Int64
	return tp, nil
}

// Spend deletes a session once what it validated is done, so it cannot
// authorise a second change.
func (s *Service) Spend(ctx context.Context, sid string) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM threepid_sessions WHERE sid = $1`, sid); err != nil {
			return fmt.Errorf("spending a validation session: %w", err)
		}
		return nil
	})
}

// Bind adds a validated identifier to user's account: M_THREEPID_IN_USE
// when another account has it.
func (s *Service) Bind(ctx context.Context, user id.UserID, tp ThreePID) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT user_id FROM account_threepids WHERE medium = $1 AND address = $2`, tp.Medium, tp.Address).Scan(&owner)
		if err == nil && owner != user.String() {
			return mxerr.ThreepidInUse.With("this address is already in use")
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("looking up the owner of %s: %w", tp.Address, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO account_threepids (medium, address, user_id, validated_ts, added_ts) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (medium, address) DO UPDATE SET validated_ts = excluded.validated_ts`,
			tp.Medium, tp.Address, user.String(), tp.ValidatedAt, s.now().UnixMilli()); err != nil {
			return fmt.Errorf("adding %s to %s: %w", tp.Address, user, err)
		}
		return nil
	})
}

// Unbind removes an identifier from user's account; removing one the
// account does not have is no error, as in Synapse.
func (s *Service) Unbind(ctx context.Context, user id.UserID, medium, address string) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM account_threepids WHERE user_id = $1 AND medium = $2 AND address = $3`,
			user.String(), medium, address); err != nil {
			return fmt.Errorf("removing %s from %s: %w", address, user, err)
		}
		return nil
	})
}

// UnbindAll removes every identifier of a deactivated account.
func (s *Service) UnbindAll(ctx context.Context, user id.UserID) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM account_threepids WHERE user_id = $1`, user.String()); err != nil {
			return fmt.Errorf("removing the 3pids of %s: %w", user, err)
		}
		return nil
	})
}

// List returns user's identifiers, oldest first.
func (s *Service) List(ctx context.Context, user id.UserID) ([]ThreePID, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT medium, address, validated_ts, added_ts FROM account_threepids WHERE user_id = $1 ORDER BY added_ts, address`, user.String())
	if err != nil {
		return nil, fmt.Errorf("listing the 3pids of %s: %w", user, err)
	}
	defer rows.Close()
	out := []ThreePID{}
	for rows.Next() {
		var tp ThreePID
		if err := rows.Scan(&tp.Medium, &tp.Address, &tp.ValidatedAt, &tp.AddedAt); err != nil {
			return nil, fmt.Errorf("reading a 3pid of %s: %w", user, err)
		}
		out = append(out, tp)
	}
	return out, rows.Err()
}

// Owner returns the account an identifier is bound to, or "".
func (s *Service) Owner(ctx context.Context, medium, address string) (id.UserID, error) {
	var owner string
	err := s.db.QueryRowContext(ctx, `SELECT user_id FROM account_threepids WHERE medium = $1 AND address = $2`, medium, address).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("looking up the owner of %s: %w", address, err)
	}
	return id.UserID(owner), nil
}

// RecordBind remembers that user bound an identifier on idServer.
func (s *Service) RecordBind(ctx context.Context, user id.UserID, medium, address, idServer string) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO threepid_id_server_binds (user_id, medium, address, id_server) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`, user.String(), medium, address, idServer); err != nil {
			return fmt.Errorf("recording the bind of %s on %s: %w", address, idServer, err)
		}
		return nil
	})
}

// ForgetBind drops what RecordBind remembered.
func (s *Service) ForgetBind(ctx context.Context, user id.UserID, medium, address, idServer string) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM threepid_id_server_binds WHERE user_id = $1 AND medium = $2 AND address = $3 AND id_server = $4`,
			user.String(), medium, address, idServer); err != nil {
			return fmt.Errorf("forgetting the bind of %s on %s: %w", address, idServer, err)
		}
		return nil
	})
}

// Bound is one identifier bound on an identity server.
type Bound struct {
	Medium, Address, IDServer string
}

// Binds lists the identity server binds of user; with medium and address
// set, only those of that identifier.
func (s *Service) Binds(ctx context.Context, user id.UserID, medium, address string) ([]Bound, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT medium, address, id_server FROM threepid_id_server_binds
		WHERE user_id = $1 AND ($2 = '' OR (medium = $2 AND address = $3)) ORDER BY id_server`, user.String(), medium, address)
	if err != nil {
		return nil, fmt.Errorf("listing the identity server binds of %s: %w", user, err)
	}
	defer rows.Close()
	var out []Bound
	for rows.Next() {
		var b Bound
		if err := rows.Scan(&b.Medium, &b.Address, &b.IDServer); err != nil {
			return nil, fmt.Errorf("reading an identity server bind of %s: %w", user, err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}
