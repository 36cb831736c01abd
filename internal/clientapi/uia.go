package clientapi

import (
	"crypto/rand"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// User-Interactive Authentication (spec: client-server-api, "User-Interactive
// Authentication API"). A UIA-protected handler calls interactiveAuth with
// the flows it offers and the request's auth dict. Until one flow is
// complete, interactiveAuth writes the 401 body itself and the handler
// returns; once it is complete, the handler performs the call and then calls
// a.uia.finish so the session cannot authorise a second call.
//
// Sessions live in memory: a restart only costs an in-flight client one
// more round trip. Each session is bound to one purpose (the operation and
// its target, e.g. "delete_device DEV") and to the requesting user, so auth
// completed for one call cannot be spent on another.

// The auth types Myelin offers.
const (
	stageDummy             = "m.login.dummy"
	stagePassword          = "m.login.password"
	stageRegistrationToken = "m.login.registration_token"
	stageRecaptcha         = "m.login.recaptcha"
	stageEmail             = "m.login.email.identity"
)

const (
	// uiaSessionTTL is how long a client has to complete a flow.
	uiaSessionTTL = 15 * time.Minute
	// uiaMaxSessions bounds memory; starting more sessions than this gives
	// M_LIMIT_EXCEEDED until old ones expire.
	uiaMaxSessions = 100_000
)

// authDict is the `auth` object of a UIA request, with the fields of every
// stage Myelin offers.
type authDict struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	// m.login.password
	Identifier *userIdentifier `json:"identifier"`
	User       string          `json:"user"` // deprecated form of identifier
	Password   string          `json:"password"`
	// m.login.registration_token
	Token string `json:"token"`
	// m.login.recaptcha
	Response string `json:"response"`
	// m.login.email.identity; threepidCreds is the older spelling.
	ThreepidCreds    *threepidCreds `json:"threepid_creds"`
	OldThreepidCreds *threepidCreds `json:"threepidCreds"`
}

// uiaFlow is one flow of the 401 body.
type uiaFlow struct {
	Stages []string `json:"stages"`
}

// uiaResp is the 401 body of a call that still needs authentication.
type uiaResp struct {
	Flows     []uiaFlow      `json:"flows"`
	Params    map[string]any `json:"params"`
	Session   string         `json:"session"`
	Completed []string       `json:"completed"`
	// ErrCode and Error report why the last stage attempt failed.
	ErrCode string `json:"errcode,omitempty"`
	Error   string `json:"error,omitempty"`
}

// uiaCall describes one call to a UIA-protected endpoint.
type uiaCall struct {
	// purpose names the operation and its target; a session serves one
	// purpose only.
	purpose string
	// user is the authenticated requester; empty on /register.
	user id.UserID
	// flows are the stage lists the endpoint accepts.
	flows [][]string
	// auth is the request's auth dict, nil when absent.
	auth *authDict
	// params are the stages' parameters for the client (the captcha's
	// public key).
	params map[string]any
}

// uiaSession is the state of one UIA session. Copies are handed out; the
// map holds the authoritative one.
type uiaSession struct {
	id        string
	purpose   string
	user      id.UserID
	created   time.Time
	completed []string
	// regToken is the token that completed m.login.registration_token; the
	// registration spends a use of it.
	regToken string
	// emailSID and emailSecret are the validation session that completed
	// m.login.email.identity; the call binds or uses its address.
	emailSID, emailSecret string
}

// uiaSessions tracks User-Interactive Auth sessions in memory.
type uiaSessions struct {
	mu       sync.Mutex
	sessions map[string]*uiaSession
	now      func() time.Time
}

func newUIASessions() *uiaSessions {
	return &uiaSessions{sessions: map[string]*uiaSession{}, now: time.Now}
}

var errTooManySessions = mxerr.LimitExceeded.With("too many authentication sessions in progress; try again later").
	WithField("retry_after_ms", int64(60_000))

// start opens a new session for purpose and user.
func (u *uiaSessions) start(purpose string, user id.UserID) (uiaSession, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	if len(u.sessions) >= uiaMaxSessions {
		u.sweepLocked(now)
		if len(u.sessions) >= uiaMaxSessions {
			return uiaSession{}, errTooManySessions
		}
	}
	s := &uiaSession{id: rand.Text(), purpose: purpose, user: user, created: now}
	u.sessions[s.id] = s
	return s.copy(), nil
}

// get returns a live session, checking that it serves purpose and user.
func (u *uiaSessions) get(sessionID, purpose string, user id.UserID) (uiaSession, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.sessions[sessionID]
	if ok && u.now().Sub(s.created) > uiaSessionTTL {
		delete(u.sessions, sessionID)
		ok = false
	}
	if !ok {
		return uiaSession{}, mxerr.Unknown.WithStatus(http.StatusBadRequest).With("unknown or expired auth session")
	}
	if s.purpose != purpose || s.user != user {
		return uiaSession{}, mxerr.Forbidden.With("requested operation has changed during the auth session")
	}
	return s.copy(), nil
}

// complete records stage as done in the session, with what the stage
// proved (stageProof): the registration token, or the e-mail validation.
func (u *uiaSessions) complete(sessionID, stage string, proof stageProof) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.sessions[sessionID]
	if !ok {
		return
	}
	if !slices.Contains(s.completed, stage) {
		s.completed = append(s.completed, stage)
	}
	if proof.regToken != "" {
		s.regToken = proof.regToken
	}
	if proof.emailSID != "" {
		s.emailSID, s.emailSecret = proof.emailSID, proof.emailSecret
	}
}

// stageProof is what a completed stage leaves for the call it authorises.
type stageProof struct {
	regToken              string
	emailSID, emailSecret string
}

// finish ends a session once the call it authorised has succeeded.
func (u *uiaSessions) finish(sessionID string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.sessions, sessionID)
}

func (u *uiaSessions) sweepLocked(now time.Time) {
	for k, s := range u.sessions {
		if now.Sub(s.created) > uiaSessionTTL {
			delete(u.sessions, k)
		}
	}
}

func (s *uiaSession) copy() uiaSession {
	c := *s
	c.completed = slices.Clone(s.completed)
	return c
}

// interactiveAuth runs one round of User-Interactive Authentication for c.
// It returns the session and true once a flow is complete. Otherwise it has
// written the 401 response (with errcode and error when the attempted stage
// failed) and returns false with a nil error; a non-nil error is for the
// adapter to write.
func (a *API) interactiveAuth(w http.ResponseWriter, r *http.Request, c uiaCall) (uiaSession, bool, error) {
	if c.auth == nil || (c.auth.Type == "" && c.auth.Session == "") {
		// No auth: a request to a UIA endpoint never succeeds without it,
		// even when the only stage is m.login.dummy.
		sess, err := a.uia.start(c.purpose, c.user)
		if err != nil {
			return uiaSession{}, false, err
		}
		return sess, false, writeUIA(w, c.flows, c.params, sess, nil)
	}
	var sess uiaSession
	var err error
	if c.auth.Session != "" {
		sess, err = a.uia.get(c.auth.Session, c.purpose, c.user)
	} else {
		// A client may attempt a stage without first fetching a session.
		sess, err = a.uia.start(c.purpose, c.user)
	}
	if err != nil {
		return uiaSession{}, false, err
	}

	var stageErr *mxerr.Error
	if t := c.auth.Type; t != "" && !slices.Contains(sess.completed, t) {
		switch {
		case !offered(c.flows, t):
			stageErr = mxerr.Unrecognized.With("auth type %q is not offered for this request", t)
		case !nextStage(c.flows, sess.completed, t):
			stageErr = mxerr.Forbidden.With("complete the stages of a flow in order; %q is not next", t)
		default:
			proof, err := a.checkStage(r, c, c.auth)
			if e, ok := mxerr.From(err); ok && e == errUIAOtherUser {
				// Not a failed stage to retry: the request is refused,
				// as Synapse refuses it.
				return uiaSession{}, false, err
			} else if ok && e.Status < 500 {
				stageErr = e
			} else if err != nil {
				return uiaSession{}, false, err
			} else {
				a.uia.complete(sess.id, t, proof)
				sess.completed = append(sess.completed, t)
				if proof.regToken != "" {
					sess.regToken = proof.regToken
				}
				if proof.emailSID != "" {
					sess.emailSID, sess.emailSecret = proof.emailSID, proof.emailSecret
				}
			}
		}
	}
	if flowComplete(c.flows, sess.completed) {
		return sess, true, nil
	}
	return sess, false, writeUIA(w, c.flows, c.params, sess, stageErr)
}

// errUIAOtherUser refuses a password stage naming another user than the
// logged-in one: 403 for the whole request, not a stage to try again.
var errUIAOtherUser = mxerr.Forbidden.With("the identifier does not match the logged-in user")

// checkStage verifies one stage's credentials and returns what it proved
// for the session to keep.
func (a *API) checkStage(r *http.Request, c uiaCall, auth *authDict) (stageProof, error) {
	ctx := r.Context()
	switch auth.Type {
	case stageDummy:
		return stageProof{}, nil
	case stagePassword:
		user, err := a.identifiedUser(ctx, auth.Identifier, auth.User)
		if err != nil {
			return stageProof{}, err
		}
		if user != c.user {
			// Checked before the password, so the answer says nothing
			// about the other account's password.
			return stageProof{}, errUIAOtherUser
		}
		if auth.Password == "" {
			return stageProof{}, mxerr.MissingParam.With("password is required")
		}
		return stageProof{}, a.users.CheckPassword(ctx, user, auth.Password)
	case stageRecaptcha:
		return stageProof{}, a.verifyRecaptcha(ctx, auth.Response, clientIP(r))
	case stageRegistrationToken:
		if auth.Token == "" {
			return stageProof{}, mxerr.MissingParam.With("token is required")
		}
		ok, err := a.users.RegistrationTokenValid(ctx, auth.Token)
		if err != nil {
			return stageProof{}, err
		}
		if !ok {
			return stageProof{}, mxerr.Unauthorized.With("invalid registration token")
		}
		return stageProof{regToken: auth.Token}, nil
	case stageEmail:
		creds := auth.ThreepidCreds
		if creds == nil {
			creds = auth.OldThreepidCreds
		}
		if creds == nil || creds.SID == nil || creds.ClientSecret == nil {
			return stageProof{}, mxerr.MissingParam.With("threepid_creds with sid and client_secret is required")
		}
		if a.threepids == nil {
			return stageProof{}, mxerr.ThreepidAuthFailed.With("no validated 3pid session found")
		}
		tp, err := a.threepids.Validated(ctx, *creds.SID, *creds.ClientSecret)
		if err != nil {
			return stageProof{}, err
		}
		if c.user != "" {
			// A logged-in user proves an address of their own account.
			if owner, err := a.threepids.Owner(ctx, tp.Medium, tp.Address); err != nil {
				return stageProof{}, err
			} else if owner != c.user {
				return stageProof{}, errUIAOtherUser
			}
		}
		return stageProof{emailSID: *creds.SID, emailSecret: *creds.ClientSecret}, nil
	}
	return stageProof{}, errors.New("checkStage: offered stage without a checker: " + auth.Type)
}

func writeUIA(w http.ResponseWriter, flows [][]string, params map[string]any, sess uiaSession, stageErr *mxerr.Error) error {
	body := uiaResp{Params: map[string]any{}, Session: sess.id, Completed: sess.completed}
	if params != nil {
		body.Params = params
	}
	if body.Completed == nil {
		body.Completed = []string{}
	}
	for _, f := range flows {
		body.Flows = append(body.Flows, uiaFlow{Stages: f})
	}
	if stageErr != nil {
		body.ErrCode, body.Error = stageErr.Code, stageErr.Message
	}
	return httpx.JSON(w, http.StatusUnauthorized, body)
}

func offered(flows [][]string, stage string) bool {
	for _, f := range flows {
		if slices.Contains(f, stage) {
			return true
		}
	}
	return false
}

// nextStage reports whether stage is the next one of a flow whose first
// stages are exactly those completed.
func nextStage(flows [][]string, completed []string, stage string) bool {
	for _, f := range flows {
		if len(f) > len(completed) && slices.Equal(f[:len(completed)], completed) && f[len(completed)] == stage {
			return true
		}
	}
	return false
}

func flowComplete(flows [][]string, completed []string) bool {
	for _, f := range flows {
		if len(f) > 0 && !slices.ContainsFunc(f, func(s string) bool { return !slices.Contains(completed, s) }) {
			return true
		}
	}
	return false
}

// passwordFlows is the flow list of the endpoints that re-check the logged-in
// user's password.
var passwordFlows = [][]string{{stagePassword}}
