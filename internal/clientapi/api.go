// Package clientapi serves the Matrix client-server API: every C-S route is
// registered in routes.go, and each handler lives in the file named after
// the spec's OpenAPI file (room_send.yaml → room_send.go), named after its
// operationId.
//
// Handlers decode and validate requests, then call the domain packages
// (users, room, clientsync); they hold no state of their own beyond the
// rate limiter and UIA sessions. clientapi is imported only by homeserver.
package clientapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/handshake"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifications"
	"github.com/myelin-chat/myelin/internal/presence"
	"github.com/myelin-chat/myelin/internal/preview"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/pushers"
	"github.com/myelin-chat/myelin/internal/ratelimit"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/relations"
	"github.com/myelin-chat/myelin/internal/reports"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/search"
	"github.com/myelin-chat/myelin/internal/slidingsync"
	"github.com/myelin-chat/myelin/internal/spaces"
	"github.com/myelin-chat/myelin/internal/threepid"
	"github.com/myelin-chat/myelin/internal/typing"
	"github.com/myelin-chat/myelin/internal/upgrade"
	"github.com/myelin-chat/myelin/internal/userdir"
	"github.com/myelin-chat/myelin/internal/users"
)

// API holds the dependencies of the client-server handlers.
type API struct {
	cfg     *config.Config
	log     *slog.Logger
	users   *users.Service
	rooms   *room.Service
	syncer  *clientsync.Service
	limiter *ratelimit.Limiter
	uia     *uiaSessions
	http    *httpx.Adapter

	accountData *accountdata.Store
	receipts    *receipts.Store
	typing      *typing.Tracker
	presence    *presence.Tracker
	e2ee        *e2ee.Service
	// handshake reaches other servers for joins, invites and invite
	// rejections; nil when federation is off.
	handshake *handshake.Service
	// edus passes typing notices and receipts on to the other servers in
	// a room; nil when federation is off.
	edus EDUSender
	// preview makes URL previews; nil when url_preview_enabled is off.
	preview *preview.Service
	// media is the content repository; nil: no media routes.
	media *media.Service
	// push stores and serves push rules (pushrules.yaml).
	push *push.Service
	// reports stores reports of content; reportLimiter (nil: none)
	// limits each user's reports.
	reports       *reports.Store
	reportLimiter *ratelimit.Limiter
	// relations is the relations index; nil leaves /relations and
	// /threads unrecognized.
	relations *relations.Store
	// notifications serves GET /notifications; nil answers M_UNRECOGNIZED.
	notifications *notifications.Service
	// userdir answers user directory searches (users.yaml).
	userdir *userdir.Service
	// threepids validates and stores e-mail addresses; nil: none.
	threepids *threepid.Service
	// identity proxies binds to identity servers; nil: refused.
	identity IdentityServers
	// pushers stores pushers (pusher.yaml); nil leaves them unrecognized.
	pushers *pushers.Service
	// spaces answers space hierarchies and room summaries; nil leaves
	// their routes unregistered.
	spaces *spaces.Service
	// upgrades performs room upgrades (room_upgrades.yaml); nil leaves
	// the route unrecognized.
	upgrades *upgrade.Service
	// slidingSync serves simplified sliding sync (MSC4186); nil leaves
	// its route out.
	slidingSync *slidingsync.Service
	// search answers server-side searches (search.yaml); nil leaves
	// /search unrecognized.
	searcher *search.Service
}

// EDUSender queues an EDU for other servers (sender.Sender).
type EDUSender interface {
	EnqueueEDU(ctx context.Context, destinations []string, eduType string, content json.RawMessage) error
}

// New returns the client API.
func New(cfg *config.Config, log *slog.Logger, u *users.Service, r *room.Service, s *clientsync.Service,
	ad *accountdata.Store, rc *receipts.Store, ty *typing.Tracker, hs *handshake.Service, edus EDUSender, keys *e2ee.Service, opts ...Option) *API {
	var lim *ratelimit.Limiter
	if cfg.RateLimit.Enabled {
		lim = ratelimit.New(cfg.RateLimit.PerSecond, cfg.RateLimit.Burst)
	}
	a := &API{
		cfg: cfg, log: log, users: u, rooms: r, syncer: s, limiter: lim,
		accountData: ad, receipts: rc, typing: ty, handshake: hs, edus: edus, e2ee: keys,
		uia:  newUIASessions(),
		http: &httpx.Adapter{Log: log},
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Option adds an optional subsystem to the API.
type Option func(*API)

// WithPush serves the push rule endpoints from p; the homeserver always
// passes it.
func WithPush(p *push.Service) Option { return func(a *API) { a.push = p } }

// WithThreePIDs serves e-mail validation, binding and password resets
// through t.
func WithThreePIDs(t *threepid.Service) Option { return func(a *API) { a.threepids = t } }

// WithSlidingSync serves simplified sliding sync (MSC4186) from ss and
// advertises it in /versions.
func WithSlidingSync(ss *slidingsync.Service) Option { return func(a *API) { a.slidingSync = ss } }

type ctxKey int

const sessionKey ctxKey = 0

// session returns the authenticated session of a request that passed through
// authed.
func session(r *http.Request) users.Session {
	s, _ := r.Context().Value(sessionKey).(users.Session)
	return s
}

// accessToken reads the token from the Authorization header, or from the
// deprecated access_token query parameter.
func accessToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// authed requires a valid access token of a full account and applies the
// per-user rate limit. Guests get 403 M_GUEST_ACCESS_FORBIDDEN: only the
// endpoints that guest_access.md lists admit them, through guestAuthed.
func (a *API) authed(h httpx.HandlerFunc) httpx.HandlerFunc {
	return a.authedIf(func(*http.Request) bool { return false }, h)
}

// guestAuthed is authed for an endpoint guests may call too.
func (a *API) guestAuthed(h httpx.HandlerFunc) httpx.HandlerFunc {
	return a.authedIf(func(*http.Request) bool { return true }, h)
}

// authedIf is authed, admitting guests to requests guestOK accepts.
func (a *API) authedIf(guestOK func(*http.Request) bool, h httpx.HandlerFunc) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		sess, err := a.users.Authenticate(r.Context(), accessToken(r))
		if err != nil {
			return err
		}
		if sess.IsGuest && !guestOK(r) {
			return mxerr.GuestAccessForbidden.With("guest accounts may not use this endpoint")
		}
		if err := a.rateLimit(r, sess.UserID.String()); err != nil {
			return err
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), sessionKey, sess)))
	}
}

// authedOrAnonymous is authed for a request with an access token, and
// limited for one without (a password reset by e-mail).
func (a *API) authedOrAnonymous(h httpx.HandlerFunc) httpx.HandlerFunc {
	withToken, without := a.authed(h), a.limited(h)
	return func(w http.ResponseWriter, r *http.Request) error {
		if accessToken(r) == "" && r.Header.Get("Authorization") == "" {
			return without(w, r)
		}
		return withToken(w, r)
	}
}

// limited applies the per-IP rate limit to unauthenticated endpoints that
// cost real work (login, registration).
func (a *API) limited(h httpx.HandlerFunc) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := a.rateLimit(r, "ip:"+clientIP(r)); err != nil {
			return err
		}
		return h(w, r)
	}
}

func (a *API) rateLimit(r *http.Request, key string) error {
	if a.limiter == nil {
		return nil
	}
	if ok, retry := a.limiter.Allow(key); !ok {
		return mxerr.LimitExceeded.With("too many requests").WithField("retry_after_ms", retry.Milliseconds())
	}
	return nil
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// pathRoomID parses the {roomId} path parameter.
func pathRoomID(r *http.Request) (id.RoomID, error) {
	v := r.PathValue("roomId")
	if !strings.HasPrefix(v, "!") || !strings.Contains(v, ":") && len(v) < 2 {
		return "", mxerr.InvalidParam.With("invalid room ID %q", v)
	}
	return id.RoomID(v), nil
}

// parseStreamToken reads the stream position of a sync or pagination token.
func parseStreamToken(s string) (int64, error) {
	t, err := clientsync.ParseToken(s)
	return t.Pos, err
}

// shareEDU sends an EDU about roomID to the other servers in it. EDUs are
// best effort: a failure to queue is logged, not returned.
func (a *API) shareEDU(ctx context.Context, roomID id.RoomID, eduType string, content any) {
	if a.edus == nil {
		return
	}
	servers, err := a.rooms.Servers(ctx, roomID)
	if err != nil {
		a.log.Warn("listing servers for an EDU failed", "room_id", roomID, "err", err)
		return
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return
	}
	if err := a.edus.EnqueueEDU(ctx, servers, eduType, raw); err != nil {
		a.log.Warn("queueing an EDU failed", "room_id", roomID, "edu_type", eduType, "err", err)
	}
}

// devicesGone drops the keys and to-device inbox of deleted devices and
// tells the users who share rooms. The devices are gone either way, so a
// failure is logged, not returned.
func (a *API) devicesGone(ctx context.Context, user id.UserID, devices []id.DeviceID) {
	if a.e2ee == nil || len(devices) == 0 {
		return
	}
	if err := a.e2ee.DeleteDevices(ctx, user, devices); err != nil {
		a.log.Warn("dropping keys of deleted devices failed", "user_id", user, "err", err)
	}
}

// devicesChanged tells the users and servers sharing a room with user
// about new or renamed devices. The change is made either way, so a failure
// is logged, not returned.
func (a *API) devicesChanged(ctx context.Context, user id.UserID, devices []id.DeviceID) {
	if a.e2ee == nil {
		return
	}
	if err := a.e2ee.DevicesChanged(ctx, user, devices); err != nil {
		a.log.Warn("announcing changed devices failed", "user_id", user, "err", err)
	}
}

// allDevices lists a user's devices before they are all deleted.
func (a *API) allDevices(ctx context.Context, user id.UserID) []id.DeviceID {
	devs, err := a.users.Devices(ctx, user)
	if err != nil {
		return nil
	}
	out := make([]id.DeviceID, 0, len(devs))
	for _, d := range devs {
		out = append(out, d.DeviceID)
	}
	return out
}
