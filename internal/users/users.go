// Package users owns local accounts, devices and access tokens: creating
// accounts with bcrypt password hashes, logging in, resolving an access token
// to a session, and deactivation. Guest accounts (guests.go) are accounts
// too, flagged in the session so that the client API can limit them.
//
// Access tokens are random strings stored only as SHA-256 hashes, so a
// database leak does not leak usable tokens. users imports storage and mxerr;
// it knows nothing about rooms.
package users

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Session is the authenticated requester behind an access token.
type Session struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	IsAdmin  bool
	// IsGuest marks a guest account (the guest access module), which the
	// client API limits to the endpoints the spec lists.
	IsGuest bool
}

// Account is a local user account.
type Account struct {
	UserID      id.UserID
	IsAdmin     bool
	Deactivated bool
	DisplayName string
	AvatarURL   string
}

// Device is one of a user's logged-in devices.
type Device struct {
	DeviceID    id.DeviceID `json:"device_id"`
	DisplayName *string     `json:"display_name,omitempty"`
	LastSeenTS  *int64      `json:"last_seen_ts,omitempty"`
	LastSeenIP  *string     `json:"last_seen_ip,omitempty"`
}

// Service manages accounts and sessions.
type Service struct {
	db         *storage.DB
	serverName string
	bcryptCost int
	log        *slog.Logger
	now        func() time.Time
	tokens     tokenCache
	profiles   ProfileHook
	// accessLifetime and refreshLifetime are the lifetimes of refreshable
	// access tokens and of refresh tokens (0: until used).
	accessLifetime, refreshLifetime time.Duration
	devices                         DevicesHook
}

// ProfileHook is told, inside the transaction that makes the change, of
// an account's new global profile: when it is created, when its display
// name or avatar changes, and when it is deactivated. An error aborts the
// transaction.
type ProfileHook func(ctx context.Context, tx *storage.Tx, user id.UserID, displayName, avatarURL string, deactivated bool) error

// DevicesHook is told, inside the transaction that deletes them, of a
// user's devices being removed: deleted, logged out, or all of them at
// once (logout from all devices, deactivation). An error aborts the
// transaction.
type DevicesHook func(ctx context.Context, tx *storage.Tx, user id.UserID, devices []id.DeviceID) error

// Option configures a Service.
type Option func(*Service)

// WithProfileHook calls h on every change of an account's profile (the
// user directory).
func WithProfileHook(h ProfileHook) Option { return func(s *Service) { s.profiles = h } }

// WithDevicesHook calls h whenever devices are removed (their pushers go
// with them).
func WithDevicesHook(h DevicesHook) Option { return func(s *Service) { s.devices = h } }

// New returns a Service for the server named serverName.
func New(db *storage.DB, serverName string, bcryptCost int, log *slog.Logger, opts ...Option) *Service {
	s := &Service{db: db, serverName: serverName, bcryptCost: bcryptCost, log: log, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// profileChanged runs the profile hook for user's stored profile.
func (s *Service) profileChanged(ctx context.Context, tx *storage.Tx, user id.UserID) error {
	if s.profiles == nil {
		return nil
	}
	var deact int64
	var dn, av sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT deactivated, displayname, avatar_url FROM accounts WHERE user_id = $1`, user.String()).
		Scan(&deact, &dn, &av); err != nil {
		return fmt.Errorf("reading the profile of %s: %w", user, err)
	}
	return s.profiles(ctx, tx, user, dn.String, av.String, deact != 0)
}

// ServerName returns the server name of local users.
func (s *Service) ServerName() string { return s.serverName }

var localpartRE = regexp.MustCompile(`^[a-z0-9._=/+-]+$`)

// ValidateLocalpart checks a requested localpart against the spec's grammar
// for new user IDs.
func (s *Service) ValidateLocalpart(localpart string) error {
	if localpart == "" || !localpartRE.MatchString(localpart) {
		return mxerr.InvalidUsername.With("user ID may contain only a-z, 0-9, ., _, =, -, / and +")
	}
	if len("@"+localpart+":"+s.serverName) > 255 {
		return mxerr.InvalidUsername.With("user ID is too long")
	}
	return nil
}

// UserID returns the full user ID for a localpart.
func (s *Service) UserID(localpart string) id.UserID {
	return id.NewUserID(localpart, s.serverName)
}

// IsLocal reports whether userID belongs to this server.
func (s *Service) IsLocal(userID id.UserID) bool {
	return userID.Homeserver() == s.serverName
}

// HashPassword returns the bcrypt hash of password.
func (s *Service) HashPassword(password string) (string, error) {
	if len(password) > 72 {
		// bcrypt only reads 72 bytes; pre-hash longer passwords so the whole
		// password counts.
		sum := sha256.Sum256([]byte(password))
		password = base64.StdEncoding.EncodeToString(sum[:])
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

func checkPassword(hash, password string) bool {
	if hash == "" {
		return false
	}
	if len(password) > 72 {
		sum := sha256.Sum256([]byte(password))
		password = base64.StdEncoding.EncodeToString(sum[:])
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// Create makes a new account. password may be empty for accounts that cannot
// log in with a password.
func (s *Service) Create(ctx context.Context, localpart, password string, admin bool) (id.UserID, error) {
	nu, err := s.prepareAccount(localpart, password, admin)
	if err != nil {
		return "", err
	}
	if err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if err := nu.insert(ctx, tx); err != nil {
			return err
		}
		return s.profileChanged(ctx, tx, nu.userID)
	}); err != nil {
		return "", err
	}
	s.log.Info("account created", "user_id", nu.userID, "admin", admin)
	return nu.userID, nil
}

// newAccount is a validated account with its password already hashed, ready
// to insert inside whatever transaction the caller needs.
type newAccount struct {
	userID    id.UserID
	localpart string
	hash      string
	admin     bool
	createdTS int64
}

// prepareAccount validates the localpart and hashes the password outside
// any transaction, since bcrypt is slow.
func (s *Service) prepareAccount(localpart, password string, admin bool) (newAccount, error) {
	if err := s.ValidateLocalpart(localpart); err != nil {
		return newAccount{}, err
	}
	nu := newAccount{userID: s.UserID(localpart), localpart: localpart, admin: admin, createdTS: s.now().UnixMilli()}
	if password != "" {
		var err error
		if nu.hash, err = s.HashPassword(password); err != nil {
			return newAccount{}, err
		}
	}
	return nu, nil
}

func (nu newAccount) insert(ctx context.Context, tx *storage.Tx) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO accounts (user_id, localpart, password_hash, is_admin, displayname, created_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
		nu.userID.String(), nu.localpart, nu.hash, storage.Bool(nu.admin), nu.localpart, nu.createdTS)
	if storage.IsUniqueViolation(err) {
		return mxerr.UserInUse.With("user ID already taken")
	}
	if err != nil {
		return fmt.Errorf("creating account %s: %w", nu.userID, err)
	}
	return nil
}

// Available reports whether localpart is free.
func (s *Service) Available(ctx context.Context, localpart string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE localpart = $1`, localpart).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("checking localpart %s: %w", localpart, err)
	}
	return n == 0, nil
}

// Get returns a local account.
func (s *Service) Get(ctx context.Context, userID id.UserID) (Account, error) {
	var a Account
	var admin, deact int64
	var dn, av sql.NullString
	err := s.db.QueryRowContext(ctx,
		`SELECT is_admin, deactivated, displayname, avatar_url FROM accounts WHERE user_id = $1`, userID.String()).
		Scan(&admin, &deact, &dn, &av)
	if errors.Is(err, sql.ErrNoRows) {
		return a, mxerr.NotFound.With("user not found")
	}
	if err != nil {
		return a, fmt.Errorf("loading account %s: %w", userID, err)
	}
	return Account{UserID: userID, IsAdmin: admin != 0, Deactivated: deact != 0, DisplayName: dn.String, AvatarURL: av.String}, nil
}

// SetProfile updates the stored display name and avatar (nil leaves a field
// unchanged, "" clears it).
func (s *Service) SetProfile(ctx context.Context, userID id.UserID, displayName, avatarURL *string) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if displayName != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET displayname = $2 WHERE user_id = $1`, userID.String(), nullIfEmpty(*displayName)); err != nil {
				return fmt.Errorf("setting displayname of %s: %w", userID, err)
			}
		}
		if avatarURL != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET avatar_url = $2 WHERE user_id = $1`, userID.String(), nullIfEmpty(*avatarURL)); err != nil {
				return fmt.Errorf("setting avatar of %s: %w", userID, err)
			}
		}
		if displayName == nil && avatarURL == nil {
			return nil
		}
		return s.profileChanged(ctx, tx, userID)
	})
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// CheckPassword verifies the password of a local user. Unknown users and
// wrong passwords give the same M_FORBIDDEN.
func (s *Service) CheckPassword(ctx context.Context, userID id.UserID, password string) error {
	var hash string
	var deact int64
	err := s.db.QueryRowContext(ctx, `SELECT password_hash, deactivated FROM accounts WHERE user_id = $1`, userID.String()).Scan(&hash, &deact)
	if errors.Is(err, sql.ErrNoRows) {
		// Spend the same time as a real check so timing does not reveal
		// which user IDs exist.
		checkPassword("$2a$10$0000000000000000000000000000000000000000000000000000.", password)
		return mxerr.Forbidden.With("invalid username or password")
	}
	if err != nil {
		return fmt.Errorf("loading password of %s: %w", userID, err)
	}
	if !checkPassword(hash, password) {
		return mxerr.Forbidden.With("invalid username or password")
	}
	if deact != 0 {
		return mxerr.UserDeactivated.With("this account has been deactivated")
	}
	return nil
}

// SetPassword replaces a user's password hash.
func (s *Service) SetPassword(ctx context.Context, userID id.UserID, password string) error {
	hash, err := s.HashPassword(password)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE accounts SET password_hash = $2 WHERE user_id = $1`, userID.String(), hash); err != nil {
		return fmt.Errorf("setting password of %s: %w", userID, err)
	}
	return nil
}

// NewDeviceID returns a fresh random device ID.
func NewDeviceID() id.DeviceID {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return id.DeviceID(strings.ToUpper(hex.EncodeToString(b[:])[:10]))
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Login creates (or reuses) a device and issues a new access token for
// it, one that does not expire.
func (s *Service) Login(ctx context.Context, userID id.UserID, deviceID id.DeviceID, displayName *string) (token string, dev id.DeviceID, err error) {
	t, err := s.login(ctx, userID, deviceID, displayName, false)
	return t.AccessToken, t.DeviceID, err
}

// LoginRefreshable is Login for a client that asked for a refresh token:
// the access token expires, and the refresh token renews it (Refresh).
func (s *Service) LoginRefreshable(ctx context.Context, userID id.UserID, deviceID id.DeviceID, displayName *string) (Tokens, error) {
	return s.login(ctx, userID, deviceID, displayName, true)
}

func (s *Service) login(ctx context.Context, userID id.UserID, deviceID id.DeviceID, displayName *string, refreshable bool) (Tokens, error) {
	if deviceID == "" {
		deviceID = NewDeviceID()
	}
	now := s.now()
	var t Tokens
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, $4)
			 ON CONFLICT (user_id, device_id) DO NOTHING`,
			userID.String(), deviceID.String(), displayName, now.UnixMilli()); err != nil {
			return fmt.Errorf("creating device: %w", err)
		}
		// A login with an existing device ID replaces that device's tokens.
		if err := deleteDeviceTokens(ctx, tx, userID, deviceID); err != nil {
			return err
		}
		var err error
		t, err = s.issue(ctx, tx, userID, deviceID, refreshable, "", now)
		return err
	})
	// The device's previous token, if any, is gone.
	s.tokens.forgetUser(userID)
	if err != nil {
		return Tokens{}, fmt.Errorf("logging in %s: %w", userID, err)
	}
	return t, nil
}

// Authenticate resolves an access token. The lookup is by hash, so the
// comparison never touches the secret itself. Sessions are cached (see
// tokenCache).
func (s *Service) Authenticate(ctx context.Context, token string) (Session, error) {
	if token == "" {
		return Session{}, mxerr.MissingToken.With("missing access token")
	}
	hash := hashToken(token)
	now := s.now()
	sess, ok, gen := s.tokens.get(hash, now)
	if ok {
		return sess, nil
	}
	var user, dev string
	var admin, deact, guest int64
	var expires sql.NullInt64
	var refresh, prev sql.NullString
	err := s.db.QueryRowContext(ctx,
		`SELECT t.user_id, t.device_id, a.is_admin, a.deactivated, a.is_guest, t.expires_ts, t.refresh_hash, r.prev_hash FROM access_tokens t
		 JOIN accounts a ON a.user_id = t.user_id
		 LEFT JOIN refresh_tokens r ON r.token_hash = t.refresh_hash
		 WHERE t.token_hash = $1`, hash).
		Scan(&user, &dev, &admin, &deact, &guest, &expires, &refresh, &prev)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && deact != 0) {
		return sess, mxerr.UnknownToken.With("unknown access token").WithField("soft_logout", false)
	}
	if err != nil {
		return sess, fmt.Errorf("looking up access token: %w", err)
	}
	var until time.Time
	if expires.Valid {
		until = time.UnixMilli(expires.Int64)
		if !now.Before(until) {
			// The device stays: the client refreshes, or logs in again
			// with the same device ID and keeps its keys.
			return sess, mxerr.UnknownToken.With("the access token has expired").WithField("soft_logout", true)
		}
	}
	if prev.Valid {
		if err := s.retirePredecessor(ctx, refresh.String); err != nil {
			return sess, err
		}
	}
	sess = Session{UserID: id.UserID(user), DeviceID: id.DeviceID(dev), IsAdmin: admin != 0, IsGuest: guest != 0}
	s.tokens.put(hash, sess, gen, now, until)
	return sess, nil
}

// Logout deletes a device and its tokens.
func (s *Service) Logout(ctx context.Context, userID id.UserID, deviceID id.DeviceID) error {
	return s.DeleteDevices(ctx, userID, []id.DeviceID{deviceID})
}

// LogoutAll deletes every device and token of a user.
func (s *Service) LogoutAll(ctx context.Context, userID id.UserID) error {
	defer s.tokens.forgetUser(userID)
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if s.devices != nil {
			devs, err := deviceIDs(ctx, tx, userID)
			if err != nil {
				return err
			}
			if err := s.devices(ctx, tx, userID, devs); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM access_tokens WHERE user_id = $1`, userID.String()); err != nil {
			return fmt.Errorf("deleting tokens of %s: %w", userID, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE user_id = $1`, userID.String()); err != nil {
			return fmt.Errorf("deleting refresh tokens of %s: %w", userID, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE user_id = $1`, userID.String()); err != nil {
			return fmt.Errorf("deleting devices of %s: %w", userID, err)
		}
		return nil
	})
}

// DeleteDevices removes devices and their tokens.
func (s *Service) DeleteDevices(ctx context.Context, userID id.UserID, devices []id.DeviceID) error {
	defer s.tokens.forgetUser(userID)
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		for _, d := range devices {
			if err := deleteDeviceTokens(ctx, tx, userID, d); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = $2`, userID.String(), d.String()); err != nil {
				return fmt.Errorf("deleting device %s: %w", d, err)
			}
		}
		if s.devices != nil && len(devices) > 0 {
			return s.devices(ctx, tx, userID, devices)
		}
		return nil
	})
}

// deviceIDs lists a user's devices inside tx.
func deviceIDs(ctx context.Context, tx *storage.Tx, userID id.UserID) ([]id.DeviceID, error) {
	rows, err := tx.QueryContext(ctx, `SELECT device_id FROM devices WHERE user_id = $1`, userID.String())
	if err != nil {
		return nil, fmt.Errorf("listing devices of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []id.DeviceID
	for rows.Next() {
		var d id.DeviceID
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("listing devices of %s: %w", userID, err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Devices lists a user's devices.
func (s *Service) Devices(ctx context.Context, userID id.UserID) ([]Device, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 ORDER BY created_ts`, userID.String())
	if err != nil {
		return nil, fmt.Errorf("listing devices of %s: %w", userID, err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		var d Device
		var name, ip sql.NullString
		var seen sql.NullInt64
		if err := rows.Scan(&d.DeviceID, &name, &seen, &ip); err != nil {
			return nil, fmt.Errorf("scanning device: %w", err)
		}
		if name.Valid {
			d.DisplayName = &name.String
		}
		if seen.Valid {
			d.LastSeenTS = &seen.Int64
		}
		if ip.Valid {
			d.LastSeenIP = &ip.String
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Device returns one device, or M_NOT_FOUND.
func (s *Service) Device(ctx context.Context, userID id.UserID, deviceID id.DeviceID) (Device, error) {
	devs, err := s.Devices(ctx, userID)
	if err != nil {
		return Device{}, err
	}
	for _, d := range devs {
		if d.DeviceID == deviceID {
			return d, nil
		}
	}
	return Device{}, mxerr.NotFound.With("unknown device")
}

// RenameDevice sets a device's display name.
func (s *Service) RenameDevice(ctx context.Context, userID id.UserID, deviceID id.DeviceID, name string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2`, userID.String(), deviceID.String(), name)
	if err != nil {
		return fmt.Errorf("renaming device %s: %w", deviceID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return mxerr.NotFound.With("unknown device")
	}
	return nil
}

// TouchDevice records when and from where a device was last seen.
func (s *Service) TouchDevice(ctx context.Context, sess Session, ip string) {
	_, _ = s.db.ExecContext(ctx, `UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4 WHERE user_id = $1 AND device_id = $2`,
		sess.UserID.String(), sess.DeviceID.String(), s.now().UnixMilli(), ip)
}

// Deactivate marks an account deactivated, removes its password and logs out
// every device. Leaving rooms is the caller's job.
func (s *Service) Deactivate(ctx context.Context, userID id.UserID) error {
	defer s.tokens.forgetUser(userID)
	if err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET deactivated = 1, password_hash = '' WHERE user_id = $1`, userID.String()); err != nil {
			return fmt.Errorf("deactivating %s: %w", userID, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_fields WHERE user_id = $1`, userID.String()); err != nil {
			return fmt.Errorf("erasing the profile fields of %s: %w", userID, err)
		}
		return s.profileChanged(ctx, tx, userID)
	}); err != nil {
		return err
	}
	return s.LogoutAll(ctx, userID)
}

// SecretEqual compares two secrets in constant time.
func SecretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
