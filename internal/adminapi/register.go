package adminapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// Shared-secret registration, compatible with Synapse's
// /_synapse/admin/v1/register and its register_new_matrix_user script:
//
//  1. GET returns a single-use nonce, valid for nonceTTL.
//  2. POST carries the nonce, the account details and
//     mac = hex(HMAC-SHA1(secret, nonce \0 username \0 password \0 "admin"|"notadmin" [\0 user_type])).
//
// Errors follow Synapse's: 400 M_BAD_JSON for a missing field, 400 M_UNKNOWN
// for an unknown nonce or invalid field, 403 for a wrong mac. The one
// difference is that a wrong mac carries M_FORBIDDEN where Synapse sends
// M_UNKNOWN with the same 403.

const (
	nonceTTL = 60 * time.Second
	// maxNonces bounds memory: the nonce endpoint is unauthenticated.
	maxNonces = 10_000
	// maxCredentialLen is Synapse's limit on username and password.
	maxCredentialLen = 512
)

// userTypes are the user_type values Synapse accepts. Myelin keeps no user
// types; the value only enters the mac.
var userTypes = map[string]bool{"support": true, "bot": true}

// sharedSecretRegistration serves shared-secret registration.
type sharedSecretRegistration struct {
	a *API

	mu     sync.Mutex
	nonces map[string]time.Time
	now    func() time.Time
}

func newSharedSecretRegistration(a *API) *sharedSecretRegistration {
	return &sharedSecretRegistration{a: a, nonces: map[string]time.Time{}, now: time.Now}
}

func badRequest(format string, args ...any) *mxerr.Error {
	return mxerr.Unknown.WithStatus(http.StatusBadRequest).With(format, args...)
}

var errSharedSecretDisabled = badRequest("Shared secret registration is not enabled")

// getNonce serves GET /_synapse/admin/v1/register.
func (s *sharedSecretRegistration) getNonce(w http.ResponseWriter, r *http.Request) error {
	if s.a.cfg.RegistrationSharedSecret == "" {
		return errSharedSecretDisabled
	}
	b := make([]byte, 64)
	_, _ = rand.Read(b)
	nonce := hex.EncodeToString(b)

	s.mu.Lock()
	now := s.now()
	s.sweepLocked(now)
	full := len(s.nonces) >= maxNonces
	if !full {
		s.nonces[nonce] = now
	}
	s.mu.Unlock()
	if full {
		return mxerr.LimitExceeded.With("too many outstanding registration nonces").WithField("retry_after_ms", nonceTTL.Milliseconds())
	}
	return httpx.OK(w, map[string]string{"nonce": nonce})
}

// takeNonce removes nonce and reports whether it was outstanding and fresh.
// A nonce is spent by any attempt, so a wrong mac cannot be retried.
func (s *sharedSecretRegistration) takeNonce(nonce string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	_, ok := s.nonces[nonce]
	delete(s.nonces, nonce)
	return ok
}

func (s *sharedSecretRegistration) sweepLocked(now time.Time) {
	for n, t := range s.nonces {
		if now.Sub(t) > nonceTTL {
			delete(s.nonces, n)
		}
	}
}

type sharedSecretRegisterReq struct {
	Nonce        *string `json:"nonce"`
	Username     *string `json:"username"`
	Password     *string `json:"password"`
	DisplayName  *string `json:"displayname"`
	Admin        bool    `json:"admin"`
	UserType     string  `json:"user_type"`
	InhibitLogin bool    `json:"inhibit_login"`
	MAC          *string `json:"mac"`
}

type sharedSecretRegisterResp struct {
	UserID      id.UserID   `json:"user_id"`
	HomeServer  string      `json:"home_server"`
	AccessToken string      `json:"access_token,omitempty"`
	DeviceID    id.DeviceID `json:"device_id,omitempty"`
}

// register serves POST /_synapse/admin/v1/register.
func (s *sharedSecretRegistration) register(w http.ResponseWriter, r *http.Request) error {
	secret := s.a.cfg.RegistrationSharedSecret
	if secret == "" {
		return errSharedSecretDisabled
	}
	var req sharedSecretRegisterReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Nonce == nil {
		return mxerr.BadJSON.With("nonce must be specified")
	}
	if !s.takeNonce(*req.Nonce) {
		return badRequest("unrecognised nonce")
	}
	if req.Username == nil {
		return mxerr.BadJSON.With("username must be specified")
	}
	if len(*req.Username) > maxCredentialLen || strings.ContainsRune(*req.Username, 0) {
		return badRequest("Invalid username")
	}
	if req.Password == nil {
		return mxerr.BadJSON.With("password must be specified")
	}
	if len(*req.Password) > maxCredentialLen || strings.ContainsRune(*req.Password, 0) {
		return badRequest("Invalid password")
	}
	if req.UserType != "" && !userTypes[req.UserType] {
		return badRequest("Invalid user type")
	}
	if req.MAC == nil {
		return mxerr.BadJSON.With("mac must be specified")
	}
	want := registrationMAC(secret, *req.Nonce, *req.Username, *req.Password, req.Admin, req.UserType)
	if !hmac.Equal([]byte(want), []byte(*req.MAC)) {
		return mxerr.Forbidden.With("HMAC incorrect")
	}

	// Synapse lowercases the requested username here (and only here).
	ctx := r.Context()
	userID, err := s.a.users.Create(ctx, strings.ToLower(*req.Username), *req.Password, req.Admin)
	if err != nil {
		return err
	}
	if req.DisplayName != nil && *req.DisplayName != "" {
		if err := s.a.users.SetProfile(ctx, userID, req.DisplayName, nil); err != nil {
			return err
		}
	}
	resp := sharedSecretRegisterResp{UserID: userID, HomeServer: s.a.cfg.ServerName}
	if !req.InhibitLogin {
		resp.AccessToken, resp.DeviceID, err = s.a.users.Login(ctx, userID, "", nil)
		if err != nil {
			return err
		}
	}
	s.a.log.Info("account registered with the shared secret", "user_id", userID, "admin", req.Admin)
	return httpx.OK(w, resp)
}

// registrationMAC is the hex HMAC-SHA1 a shared-secret registration carries.
func registrationMAC(secret, nonce, username, password string, admin bool, userType string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write([]byte(username))
	m.Write([]byte{0})
	m.Write([]byte(password))
	m.Write([]byte{0})
	if admin {
		m.Write([]byte("admin"))
	} else {
		m.Write([]byte("notadmin"))
	}
	if userType != "" {
		m.Write([]byte{0})
		m.Write([]byte(userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}
