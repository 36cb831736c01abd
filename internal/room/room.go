// Package room is the one path every event takes into a room: build (for
// local events), sign, authorize against the auth rules of the room version,
// persist with its state snapshot, update current state and forward
// extremities, then wake the notifier.
//
// Writers to one room are serialised by that room's mutex (held in its
// in-memory info); different rooms proceed in parallel up to the storage
// write order. Current state is cached per room as (type, state_key) →
// event reference; event bodies come from an LRU.
//
// room imports pdu, storage, notifier and mxerr. Client and federation APIs
// call into it; it never calls them.
package room

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Service owns room state and event persistence.
type Service struct {
	db         *storage.DB
	log        *slog.Logger
	serverName string
	key        keys.SigningKey
	notifier   *notifier.Notifier
	now        func() time.Time
	// lastCreateTS is the origin_server_ts of the latest m.room.create
	// built here; see createTimestamp.
	lastCreateTS atomic.Int64

	mu    sync.Mutex
	rooms map[id.RoomID]*info

	events    *lru.Cache[id.EventID, *Stored]
	snapshots *lru.Cache[int64, cachedSnapshot]
	// recent is the index of recent events (SQLite only; nil otherwise or
	// until EnableRecentIndex).
	recent *recentIndex

	remote         Remote
	outbox         Outbox
	keys           KeySource
	observePersist PersistObserver
	indexers       []Indexer
	decorators     []Decorator
	stateHooks     []StateHook
	// onMembership hears of every membership change this service commits.
	onMembership func(ctx context.Context, roomID id.RoomID, user id.UserID, membership string)
}

// Option configures a Service.
type Option func(*Service)

// WithRemote lets the service fetch missing events and state from other
// servers. Without it, an incoming event with unknown ancestors is refused.
func WithRemote(r Remote) Option { return func(s *Service) { s.remote = r } }

// KeySource returns other servers' verify keys (keys.Ring), for the one
// auth rule that checks a signature: a restricted join must be signed by
// the server of its join_authorised_via_users_server (rule 5.2.1).
type KeySource interface {
	VerifyKey(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error)
}

// WithKeys lets the auth rules check other servers' signatures.
func WithKeys(k KeySource) Option { return func(s *Service) { s.keys = k } }

// WithOutbox queues every accepted local event for the other servers in its
// room, in the transaction that stores it.
func WithOutbox(o Outbox) Option { return func(s *Service) { s.outbox = o } }

// WithMembershipHook calls f after each committed membership event, e.g.
// to stop a departed user's typing notice. f runs on its own goroutine,
// since the room's lock is still held at commit.
func WithMembershipHook(f func(ctx context.Context, roomID id.RoomID, user id.UserID, membership string)) Option {
	return func(s *Service) { s.onMembership = f }
}

// New returns a room Service.
func New(db *storage.DB, serverName string, key keys.SigningKey, n *notifier.Notifier, log *slog.Logger, opts ...Option) *Service {
	events, _ := lru.New[id.EventID, *Stored](50000)
	snaps, _ := lru.New[int64, cachedSnapshot](2000)
	s := &Service{
		db: db, log: log, serverName: serverName, key: key, notifier: n, now: time.Now,
		rooms: make(map[id.RoomID]*info), events: events, snapshots: snaps,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ServerName returns this server's name.
func (s *Service) ServerName() string { return s.serverName }

// Ref points at a stored event.
type Ref struct {
	NID int64
	ID  id.EventID
}

// State maps state keys to events. Values are shared and must not be mutated.
type State map[pdu.StateKey]Ref

// Stored is a persisted event with its storage metadata.
type Stored struct {
	*pdu.Event
	NID        int64
	StreamPos  int64
	Snapshot   int64 // state before the event
	Rejected   bool
	SoftFailed bool
	// Outlier events are held without the state before them (see the
	// 00004 migration); they are never in a timeline.
	Outlier    bool
	RedactedBy id.EventID
	TxnDevice  id.DeviceID
	TxnID      string
	// ReplacesNID is the nid of the state event this one replaced (0 when
	// its key was unset), if ReplacesKnown: events persisted before it was
	// recorded, outliers and backfilled events do not know it.
	ReplacesNID   int64
	ReplacesKnown bool
}

// replacesColumn is the replaces_nid value to store for st.
func (st *Stored) replacesColumn() sql.NullInt64 {
	return sql.NullInt64{Int64: st.ReplacesNID, Valid: st.ReplacesKnown}
}

// info is the in-memory view of one room. mu serialises writers.
type info struct {
	mu          sync.Mutex
	loaded      bool
	exists      bool
	roomID      id.RoomID
	version     id.RoomVersion
	state       State
	snapshot    int64
	chainLen    int64
	extremities []id.EventID
	depth       int64
	localJoined map[id.UserID]struct{}
	// servers counts the joined members of each server, ours included.
	servers map[string]int
	// pending holds events written by the open transaction of a working
	// copy, which the database cannot return until commit.
	pending map[id.EventID]*Stored
}

func (s *Service) info(roomID id.RoomID) *info {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.rooms[roomID]
	if in == nil {
		in = &info{roomID: roomID}
		s.rooms[roomID] = in
	}
	return in
}

// lockedInfo returns the room's info with its mutex held and its state
// loaded. The caller must unlock in.mu.
func (s *Service) lockedInfo(ctx context.Context, roomID id.RoomID) (*info, error) {
	in := s.info(roomID)
	in.mu.Lock()
	if !in.loaded {
		if err := s.load(ctx, in); err != nil {
			in.mu.Unlock()
			return nil, err
		}
	}
	return in, nil
}

func (s *Service) load(ctx context.Context, in *info) error {
	var version string
	err := s.db.QueryRowContext(ctx, `SELECT room_version, current_snapshot FROM rooms WHERE room_id = $1`, in.roomID.String()).
		Scan(&version, &in.snapshot)
	if errors.Is(err, sql.ErrNoRows) {
		in.exists = false
		in.loaded = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading room %s: %w", in.roomID, err)
	}
	in.version = id.RoomVersion(version)
	in.exists = true
	st, chain, err := s.loadSnapshot(ctx, in.snapshot)
	if err != nil {
		return err
	}
	in.state, in.chainLen = st, chain
	rows, err := s.db.QueryContext(ctx,
		`SELECT f.event_id, e.depth FROM forward_extremities f JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1`, in.roomID.String())
	if err != nil {
		return fmt.Errorf("loading extremities of %s: %w", in.roomID, err)
	}
	defer rows.Close()
	in.extremities = nil
	for rows.Next() {
		var e string
		var d int64
		if err := rows.Scan(&e, &d); err != nil {
			return fmt.Errorf("scanning extremity: %w", err)
		}
		in.extremities = append(in.extremities, id.EventID(e))
		in.depth = max(in.depth, d)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	in.localJoined = map[id.UserID]struct{}{}
	in.servers = map[string]int{}
	mrows, err := s.db.QueryContext(ctx,
		`SELECT state_key FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND membership = 'join'`, in.roomID.String())
	if err != nil {
		return fmt.Errorf("loading members of %s: %w", in.roomID, err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var u string
		if err := mrows.Scan(&u); err != nil {
			return err
		}
		server := id.UserID(u).Homeserver()
		in.servers[server]++
		if server == s.serverName {
			in.localJoined[id.UserID(u)] = struct{}{}
		}
	}
	in.loaded = true
	return mrows.Err()
}

// Version returns the room version, or M_NOT_FOUND for unknown rooms.
func (s *Service) Version(ctx context.Context, roomID id.RoomID) (id.RoomVersion, error) {
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return "", mxerr.NotFound.With("unknown room")
	}
	return in.version, nil
}

// Exists reports whether the server knows the room.
func (s *Service) Exists(ctx context.Context, roomID id.RoomID) (bool, error) {
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return false, err
	}
	defer in.mu.Unlock()
	return in.exists, nil
}

// CurrentState returns a copy of the room's current state references.
func (s *Service) CurrentState(ctx context.Context, roomID id.RoomID) (State, error) {
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return nil, mxerr.NotFound.With("unknown room")
	}
	return in.state, nil // copy-on-write: persist replaces the map, never mutates it
}

// LocalJoined returns the local users joined to the room.
func (s *Service) LocalJoined(ctx context.Context, roomID id.RoomID) ([]id.UserID, error) {
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	out := make([]id.UserID, 0, len(in.localJoined))
	for u := range in.localJoined {
		out = append(out, u)
	}
	return out, nil
}

// CurrentStateEvent returns one current state event, or nil.
func (s *Service) CurrentStateEvent(ctx context.Context, roomID id.RoomID, evType, stateKey string) (*Stored, error) {
	st, err := s.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ref, ok := st[pdu.StateKey{Type: evType, StateKey: stateKey}]
	if !ok {
		return nil, nil
	}
	return s.Event(ctx, ref.ID)
}

// Membership returns the user's current membership in the room ("" if none).
func (s *Service) Membership(ctx context.Context, roomID id.RoomID, user id.UserID) (string, error) {
	ev, err := s.CurrentStateEvent(ctx, roomID, "m.room.member", user.String())
	if err != nil || ev == nil {
		return "", err
	}
	return ev.Membership(), nil
}

func newRoomID(server string) id.RoomID {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return id.RoomID("!" + base64.RawURLEncoding.EncodeToString(b[:]) + ":" + server)
}

// StateKeyOf returns the state key tuple for a type and state key.
func StateKeyOf(evType, stateKey string) pdu.StateKey {
	return pdu.StateKey{Type: evType, StateKey: stateKey}
}

// StateAtPosition returns the room state as of a stream position: the state
// after the newest event at or before pos.
func (s *Service) StateAtPosition(ctx context.Context, roomID id.RoomID, pos int64) (State, error) {
	evs, err := s.Timeline(ctx, roomID, Range{Before: pos + 1, Backwards: true, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return State{}, nil
	}
	return s.StateAt(ctx, evs[0], true)
}

// StateKeyT is the (type, state_key) tuple of a state entry.
type StateKeyT = pdu.StateKey

// MemberSummary counts the room's members by membership and picks up to n
// heroes (other joined or invited members, in user ID order). Both are
// computed by the database: listing a big room's members to count them
// would dominate a sync.
func (s *Service) MemberSummary(ctx context.Context, roomID id.RoomID, user id.UserID, n int) (map[string]int, []id.UserID, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT membership, COUNT(*) FROM current_state
		WHERE room_id = $1 AND type = 'm.room.member' GROUP BY membership`, roomID.String())
	if err != nil {
		return nil, nil, fmt.Errorf("counting members of %s: %w", roomID, err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var m sql.NullString
		var c int
		if err := rows.Scan(&m, &c); err != nil {
			rows.Close()
			return nil, nil, err
		}
		counts[m.String] += c
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	rows, err = s.db.QueryContext(ctx, `SELECT state_key FROM current_state
		WHERE room_id = $1 AND type = 'm.room.member' AND membership IN ('join', 'invite') AND state_key <> $2
		ORDER BY state_key LIMIT $3`, roomID.String(), user.String(), n)
	if err != nil {
		return nil, nil, fmt.Errorf("choosing heroes of %s: %w", roomID, err)
	}
	defer rows.Close()
	var heroes []id.UserID
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, nil, err
		}
		heroes = append(heroes, id.UserID(u))
	}
	return counts, heroes, rows.Err()
}

// MembersWith lists the users whose current membership of the room is
// membership (a room upgrade copies the bans), from the current state
// table's membership column rather than the events.
func (s *Service) MembersWith(ctx context.Context, roomID id.RoomID, membership string) ([]id.UserID, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state_key FROM current_state
		WHERE room_id = $1 AND type = 'm.room.member' AND membership = $2 ORDER BY state_key`, roomID.String(), membership)
	if err != nil {
		return nil, fmt.Errorf("listing %s members of %s: %w", membership, roomID, err)
	}
	defer rows.Close()
	var out []id.UserID
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, id.UserID(u))
	}
	return out, rows.Err()
}
