// Package federationapi serves the Matrix server-server API: the route
// table is in routes.go (keys_server.go registers the unauthenticated key,
// well-known and version routes), and each handler lives in the file named
// after the spec's OpenAPI file (transactions.yaml → transactions.go),
// named after its operationId. Every other route passes the X-Matrix
// request authentication in auth.go first, with keys from keys.Ring.
//
// Incoming PDUs pass pducheck (format, canonical JSON, size, signatures,
// hashes) here, then room (auth, gaps, persistence). federationapi must
// not import clientapi or homeserver; only homeserver imports it.
package federationapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pducheck"
	"github.com/myelin-chat/myelin/internal/presence"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/spaces"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/typing"
	"github.com/myelin-chat/myelin/internal/users"
)

// API holds the dependencies of the server-server handlers.
type API struct {
	serverName string
	log        *slog.Logger
	db         *storage.DB
	rooms      *room.Service
	users      *users.Service
	checker    *pducheck.Checker
	typing     *typing.Tracker
	receipts   *receipts.Store
	e2ee       *e2ee.Service
	http       *httpx.Adapter
	txns       *txnGate
	// publicRoomsOpen shares the room directory with other servers.
	publicRoomsOpen bool
	// media serves local media to other servers; nil: no media routes.
	media *media.Service
	// invites refuses invites of local users who block them; nil: none do.
	invites InviteChecker
	// spaces answers hierarchy requests; nil: no hierarchy route.
	spaces *spaces.Service
	// presence takes m.presence EDUs; nil: they are dropped.
	presence *presence.Tracker
}

// InviteChecker says whether a local user accepts invites: nil, or
// M_INVITE_BLOCKED (accountdata.Store).
type InviteChecker interface {
	CheckInvite(ctx context.Context, user id.UserID) error
}

// WithInviteChecker refuses invites of users whose invite permission
// blocks them (spec v1.18).
func WithInviteChecker(c InviteChecker) Option { return func(a *API) { a.invites = c } }

// WithPresence hands received m.presence EDUs to p.
func WithPresence(p *presence.Tracker) Option { return func(a *API) { a.presence = p } }

// Option adds an optional subsystem to the API.
type Option func(*API)

// New returns the federation API.
func New(serverName string, log *slog.Logger, db *storage.DB, rooms *room.Service, u *users.Service, checker *pducheck.Checker,
	ty *typing.Tracker, rc *receipts.Store, keys *e2ee.Service, publicRooms bool, opts ...Option) *API {
	a := &API{
		serverName: serverName, log: log, db: db, rooms: rooms, users: u, checker: checker,
		typing: ty, receipts: rc, e2ee: keys, http: &httpx.Adapter{Log: log}, txns: newTxnGate(),
		publicRoomsOpen: publicRooms,
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// pathRoomID parses the {roomId} path parameter.
func pathRoomID(r *http.Request) (id.RoomID, error) {
	v := r.PathValue("roomId")
	if len(v) < 2 || !strings.HasPrefix(v, "!") {
		return "", mxerr.InvalidParam.With("invalid room ID %q", v)
	}
	return id.RoomID(v), nil
}

// roomForOrigin checks that the room exists here and that the requesting
// server may see it: it has a joined member, and the room's server ACL
// does not deny it.
func (a *API) roomForOrigin(ctx context.Context, roomID id.RoomID, origin string) error {
	ok, err := a.rooms.ServerInRoom(ctx, roomID, origin)
	if err != nil {
		return err
	}
	if !ok {
		if exists, err := a.rooms.Exists(ctx, roomID); err == nil && !exists {
			return mxerr.NotFound.With("unknown room")
		}
		return mxerr.Forbidden.With("server %s is not in the room", origin)
	}
	return a.checkACL(ctx, roomID, origin)
}

// checkACL applies the room's m.room.server_acl to origin.
func (a *API) checkACL(ctx context.Context, roomID id.RoomID, origin string) error {
	ev, err := a.rooms.CurrentStateEvent(ctx, roomID, "m.room.server_acl", "")
	if err != nil || ev == nil {
		return nil //nolint:nilerr // unknown rooms have no ACL; callers check existence
	}
	if !CheckACL(json.RawMessage(ev.Content), origin) {
		return mxerr.Forbidden.With("server %s is denied by the room's server ACL", origin)
	}
	return nil
}
