// Package slidingsync serves simplified sliding sync (MSC4186, POST
// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync): a client's
// rooms as named lists ordered by recency, of which it asks for windows
// (ranges), plus rooms it subscribes to, each with the state and timeline
// it wants, and the extensions (to-device, e2ee, account data, receipts,
// typing).
//
// It owns the per-connection state (which rooms each connection holds, up
// to which position, so that later responses carry only deltas), the
// pos tokens, and the bump index (room_bumps, written through room.Indexer
// in the event's transaction), which orders rooms without loading their
// timelines. It reads rooms, memberships, unread counts, account data,
// receipts, typing and keys through room, clientsync (the parts of /sync
// it shares),
// accountdata, receipts, typing and e2ee, and waits on the notifier like
// /sync. It must not import clientapi or homeserver, and never writes
// events.
package slidingsync

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/typing"
)

// maxCachedMembers bounds the users whose memberships are cached.
const maxCachedMembers = 1000

// UnstableFeature is the /versions unstable_features flag clients look for.
const UnstableFeature = "org.matrix.simplified_msc3575"

// Service answers sliding sync requests.
type Service struct {
	db          *storage.DB
	rooms       *room.Service
	sync        *clientsync.Service
	notifier    *notifier.Notifier
	accountData *accountdata.Store
	receipts    *receipts.Store
	typing      *typing.Tracker
	e2ee        *e2ee.Service // nil: no e2ee or to_device extension data
	bumps       *Bumps
	conns       *connections
	// leaveSenders caches who sent each leave of a user, to tell kicks
	// from departures (see candidates).
	leaveSenders *lru.Cache[id.EventID, id.UserID]
	// memberCache holds the membership lists of recent users (about 150
	// bytes a room: a thousand users of a thousand rooms take 150 MB at
	// most).
	memberCache *lru.Cache[id.UserID, cachedMemberships]
	// encryptedRooms and roomTypes cache what filters ask of joined rooms
	// and never changes: encryption, once on, and the create event's type.
	encryptedRooms *lru.Cache[id.RoomID, struct{}]
	roomTypes      *lru.Cache[id.RoomID, *string]
	log            *slog.Logger
}

// Deps are the subsystems sliding sync reads.
type Deps struct {
	DB          *storage.DB
	Rooms       *room.Service
	Sync        *clientsync.Service
	Notifier    *notifier.Notifier
	AccountData *accountdata.Store
	Receipts    *receipts.Store
	Typing      *typing.Tracker
	E2EE        *e2ee.Service
	Bumps       *Bumps
	Log         *slog.Logger
}

// New returns a Service. Its connections live in memory, under a random
// epoch recorded in the database: a pos issued before a restart names an
// earlier epoch and is rebuilt (see connections.load).
func New(ctx context.Context, d Deps) (*Service, error) {
	epoch := rand.Uint32()
	if _, err := d.DB.ExecContext(ctx, `INSERT INTO sliding_sync_epochs (epoch, started_ts) VALUES ($1, $2)`,
		int64(epoch), time.Now().UnixMilli()); err != nil {
		return nil, fmt.Errorf("recording the sliding sync epoch: %w", err)
	}
	s := &Service{db: d.DB, rooms: d.Rooms, sync: d.Sync, notifier: d.Notifier, accountData: d.AccountData,
		receipts: d.Receipts, typing: d.Typing, e2ee: d.E2EE, bumps: d.Bumps, log: d.Log,
		conns: newConnections(epoch)}
	s.conns.known = s.knownEpoch
	s.leaveSenders, _ = lru.New[id.EventID, id.UserID](100000)
	s.memberCache, _ = lru.New[id.UserID, cachedMemberships](maxCachedMembers)
	s.encryptedRooms, _ = lru.New[id.RoomID, struct{}](maxCachedBumps)
	s.roomTypes, _ = lru.New[id.RoomID, *string](maxCachedBumps)
	return s, nil
}

// knownEpoch reports whether an earlier process of this server issued
// pos tokens under epoch.
func (s *Service) knownEpoch(ctx context.Context, epoch uint32) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sliding_sync_epochs WHERE epoch = $1`, int64(epoch)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("looking up a sliding sync epoch: %w", err)
	}
	return n > 0, nil
}

// Request is one sliding sync call.
type Request struct {
	User    id.UserID
	Device  id.DeviceID
	Pos     string
	Timeout time.Duration
	Body    Req
}

// Sync answers a request. With a pos and a timeout it waits on the
// notifier until there is something to send or the timeout passes.
func (s *Service) Sync(ctx context.Context, r Request) (*Resp, error) {
	if err := r.Body.validate(); err != nil {
		return nil, err
	}
	key := connKey{user: r.User, device: r.Device, conn: r.Body.ConnID}
	conn, base, err := s.conns.load(ctx, key, r.Pos)
	if err != nil {
		return nil, err
	}
	waitCtx := ctx
	if r.Pos != "" && r.Timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	for {
		// The generation is read before the database, so a change that
		// lands during the build moves it and Wait returns at once.
		wake := s.sync.CurrentWake(r.User)
		resp, next, news, err := s.build(ctx, r, base, wake)
		if err != nil {
			return nil, err
		}
		if news || waitCtx == ctx || !s.notifier.Wait(waitCtx, r.User, wake.Gen) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			resp.Pos = s.conns.store(conn, base, next)
			resp.TxnID = r.Body.TxnID
			return resp, nil
		}
	}
}
