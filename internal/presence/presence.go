// Package presence keeps users' presence (the spec's "Presence" module):
// online, unavailable or offline, a status message, when each user was last
// active, for local users and for remote users whose servers send m.presence
// EDUs.
//
// Presence is state held in memory; its latest value per user is also
// written to the presence table, in batches and only when it really
// changes, so that a restart keeps it. The policy is Synapse's
// (handlers/presence.py): a local user is online from their first sync or
// PUT, unavailable after IdleTimer without activity, offline SyncOnline
// after their last sync ends (with none in flight); a remote user is
// offline when their server has said nothing for FederationTimeout, and our
// users' presence is sent again to other servers every FederationPing so
// that theirs do not time out. currently_active means active within
// ActiveGranularity. Each user has one timer armed for their next deadline:
// nothing polls over all users.
//
// Updates are coalesced: a change that Synapse would not notify about (a
// sync of a user already online, a refresh of last_active within the
// granularity) costs a map lookup and a timer reset, no write and no
// wake-up. A change that matters takes the next value of a process-wide
// serial, which /sync tokens carry (clientsync.Token.Presence), and is
// fanned out by one worker in order: the local users sharing a room with
// the user (and the user) are woken through the notifier with the kind
// notifier.Presence, the state is persisted, and for a local user an
// m.presence EDU is queued for every other server sharing a room with
// them, one EDU per batch of changes.
//
// Flow: clientapi (PUT /presence, /sync set_presence, sending events) and
// federationapi (m.presence EDUs) → Tracker → notifier, storage, sender →
// clientsync reads Changes. presence imports storage and notifier; it must
// not import room, clientsync, clientapi or federationapi (it is handed the
// room lookups it needs, see Rooms).
package presence

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
)

// The presence states of the spec.
const (
	Online      = "online"
	Unavailable = "unavailable"
	Offline     = "offline"
)

// Valid reports whether p is a presence state a client may set.
func Valid(p string) bool { return p == Online || p == Unavailable || p == Offline }

// Synapse's timers (handlers/presence.py).
const (
	// IdleTimer: a local user inactive this long goes unavailable.
	IdleTimer = 5 * time.Minute
	// SyncOnlineTimeout: a local user with no sync for this long (and none
	// in flight) goes offline.
	SyncOnlineTimeout = 30 * time.Second
	// ActiveGranularity: within it of their last activity a user is
	// currently_active, and bumps of last_active are not announced.
	ActiveGranularity = time.Minute
	// FederationTimeout: a remote user whose server sent nothing for this
	// long goes offline.
	FederationTimeout = 30 * time.Minute
	// FederationPing: our users' presence is sent again after this long
	// without a change, so that other servers do not time it out.
	FederationPing = 25 * time.Minute
)

// Timeouts overrides the timers; zero fields keep the defaults above.
type Timeouts struct {
	Idle, SyncOnline, ActiveGranularity, Federation, FederationPing time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Idle, IdleTimer)
	def(&t.SyncOnline, SyncOnlineTimeout)
	def(&t.ActiveGranularity, ActiveGranularity)
	def(&t.Federation, FederationTimeout)
	def(&t.FederationPing, FederationPing)
	return t
}

// Rooms are the room lookups presence needs (room.Service's methods):
// the local users joined to a room, and the servers in it.
type Rooms interface {
	LocalJoined(ctx context.Context, roomID id.RoomID) ([]id.UserID, error)
	Servers(ctx context.Context, roomID id.RoomID) ([]string, error)
}

// EDUSender queues EDUs for other servers (sender.Sender).
type EDUSender interface {
	EnqueueEDU(ctx context.Context, destinations []string, eduType string, content json.RawMessage) error
}

// Options configure a Tracker.
type Options struct {
	// Enabled tracks presence; off, every method does nothing and Get
	// answers offline.
	Enabled  bool
	Timeouts Timeouts
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Status is a user's presence as the spec's m.presence content renders it.
type Status struct {
	Presence        string  `json:"presence"`
	LastActiveAgo   *int64  `json:"last_active_ago,omitempty"`
	CurrentlyActive *bool   `json:"currently_active,omitempty"`
	StatusMsg       *string `json:"status_msg,omitempty"`
}

// state is one user's presence. Times are Unix milliseconds, zero for
// never.
type state struct {
	presence        string
	statusMsg       *string
	lastActive      int64
	lastSync        int64
	lastFederation  int64 // local: last sent to other servers; remote: last received
	currentlyActive bool
	syncing         int // syncs in flight (local users)
	timer           *time.Timer
	timerAt         int64
}

// snapshot is the part of a state that is announced.
type snapshot struct {
	presence        string
	statusMsg       *string
	lastActive      int64
	lastFederation  int64
	currentlyActive bool
}

func (st *state) snapshot() snapshot {
	return snapshot{st.presence, st.statusMsg, st.lastActive, st.lastFederation, st.currentlyActive}
}

// change is one announced update, in serial order.
type change struct {
	serial   int64
	user     id.UserID
	snap     snapshot
	audience map[id.UserID]bool // local users woken for it
}

// Tracker holds every known user's presence. Its methods are safe for
// concurrent use. Start loads the persisted states; Close stops timers and
// the fan-out worker.
type Tracker struct {
	db         *storage.DB
	notifier   *notifier.Notifier
	rooms      Rooms
	edus       EDUSender
	serverName string
	log        *slog.Logger
	enabled    bool
	t          Timeouts
	now        func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	work   chan item
	done   chan struct{}
	// workMu guards closing work; workClosed is set once it is closed.
	workMu     sync.RWMutex
	workClosed bool

	mu     sync.Mutex
	users  map[id.UserID]*state
	serial int64
	// changes holds the announced changes with serials above floor, oldest
	// first; a sync token older than floor gets every state instead.
	changes []change
	weight  int // sum of the changes' audience sizes
	floor   int64
	closed  bool
	started bool
}

// maxLog bounds the change log kept for incremental syncs, and maxWeight
// the audience entries it holds in all (a change in a big room names
// every local member); a sync from before the log's start gets every
// state instead, which costs one query.
const (
	maxLog    = 10000
	maxWeight = 1 << 20
)

// item is one unit of fan-out work.
type item struct {
	user id.UserID
	snap snapshot
	// ping resends a local user's unchanged presence to other servers only.
	ping bool
	// joined is set when user just joined the room: see Joined.
	joined id.RoomID
}

// Joined tells presence that user joined roomID (room's membership hook).
// As in Synapse, the users who now share a room learn each other's
// presence without waiting for a change: a local joiner gets the presence
// of the room's members, the room's local members get the joiner's, and
// the room's other servers get a local joiner's, or, for a remote joiner,
// their server gets our members'.
func (t *Tracker) Joined(roomID id.RoomID, user id.UserID) {
	if !t.enabled {
		return
	}
	t.enqueue(item{user: user, joined: roomID})
}

// New returns a Tracker; call Start before use.
func New(db *storage.DB, n *notifier.Notifier, rooms Rooms, edus EDUSender, serverName string, log *slog.Logger, o Options) *Tracker {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Tracker{db: db, notifier: n, rooms: rooms, edus: edus, serverName: serverName, log: log,
		enabled: o.Enabled, t: o.Timeouts.withDefaults(), now: now, ctx: ctx, cancel: cancel,
		work: make(chan item, 4096), done: make(chan struct{}), users: make(map[id.UserID]*state),
		workClosed: true} // until Start
	// Serials keep growing across restarts, so a token issued before one
	// is older than the new floor and gets every state again.
	t.serial = now().UnixMilli()
	t.floor = t.serial
	return t
}

// Enabled reports whether presence is tracked.
func (t *Tracker) Enabled() bool { return t.enabled }

// Start loads the persisted presence of users not offline, arms their
// timers and starts the fan-out worker.
func (t *Tracker) Start(ctx context.Context) error {
	if !t.enabled {
		return nil
	}
	rows, err := load(ctx, t.db)
	if err != nil {
		return err
	}
	now := t.now().UnixMilli()
	t.mu.Lock()
	t.started = true
	for _, r := range rows {
		st := &state{presence: r.presence, statusMsg: r.statusMsg, lastActive: r.lastActive,
			lastFederation: r.lastFederation, currentlyActive: r.currentlyActive}
		if t.local(r.user) {
			// Their syncs ended with the last process: they have
			// SyncOnline to come back before they go offline.
			st.lastSync = now
		}
		t.users[r.user] = st
		t.armLocked(r.user, st, now)
	}
	t.mu.Unlock()
	t.workMu.Lock()
	t.workClosed = false
	t.workMu.Unlock()
	go t.run()
	return nil
}

// Close stops the timers and the fan-out worker, after it has written and
// queued what it was given.
func (t *Tracker) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	for _, st := range t.users {
		if st.timer != nil {
			st.timer.Stop()
		}
	}
	started := t.started
	t.mu.Unlock()
	if started {
		t.workMu.Lock()
		t.workClosed = true
		close(t.work)
		t.workMu.Unlock()
		<-t.done
	}
	t.cancel()
}

func (t *Tracker) local(u id.UserID) bool { return u.Homeserver() == t.serverName }

// get returns the user's state, creating an offline one. t.mu must be held.
func (t *Tracker) get(u id.UserID) *state {
	st := t.users[u]
	if st == nil {
		st = &state{presence: Offline}
		t.users[u] = st
	}
	return st
}

// Set applies a PUT /presence/{userId}/status of a local user: the state,
// and the status message (cleared by offline, as in Synapse). Online also
// counts as activity.
func (t *Tracker) Set(user id.UserID, presence string, statusMsg *string) {
	if !t.enabled {
		return
	}
	t.update(user, func(st *state, now int64) {
		st.presence = presence
		st.statusMsg = statusMsg
		if presence == Offline {
			st.statusMsg = nil
		}
		if presence == Online {
			st.lastActive = now
		}
	})
}

// Syncing records that user started a /sync with set_presence (online
// when empty) and returns the function to call when it ends. As in
// Synapse, online brings an offline user online (it does not refresh
// last_active: only activity does), unavailable sets unavailable, and
// offline leaves presence alone.
func (t *Tracker) Syncing(user id.UserID, setPresence string) (done func()) {
	if !t.enabled || setPresence == Offline {
		return func() {}
	}
	t.update(user, func(st *state, now int64) {
		st.syncing++
		st.lastSync = now
		switch {
		case setPresence == Unavailable:
			st.presence = Unavailable
		case st.presence == Offline:
			st.presence = Online
			st.lastActive = now
		}
	})
	return func() {
		t.update(user, func(st *state, now int64) {
			st.syncing--
			st.lastSync = now
		})
	}
}

// Active records that user did something (sent an event): last_active
// moves, and an unavailable user is online again. Within the granularity
// of the last announced activity it changes nothing visible.
func (t *Tracker) Active(user id.UserID) {
	if !t.enabled {
		return
	}
	t.update(user, func(st *state, now int64) {
		st.lastActive = now
		if st.presence == Unavailable {
			st.presence = Online
		}
	})
}

// Get returns a user's presence as GET /presence/{userId}/status shows it.
func (t *Tracker) Get(user id.UserID) Status {
	if !t.enabled {
		return Status{Presence: Offline}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.users[user]
	if st == nil {
		return Status{Presence: Offline}
	}
	return render(st.snapshot(), t.now().UnixMilli())
}

// render turns a snapshot into m.presence content as of now.
func render(s snapshot, now int64) Status {
	out := Status{Presence: s.presence, StatusMsg: s.statusMsg}
	if s.lastActive > 0 {
		ago := max(now-s.lastActive, 0)
		out.LastActiveAgo = &ago
	}
	if s.presence == Online {
		active := s.currentlyActive
		out.CurrentlyActive = &active
	}
	return out
}

// update applies fn to the user's state under the lock, then decides, as
// Synapse's handle_update does, whether the result is worth announcing,
// re-arms the user's timer and hands an announcement to the worker.
func (t *Tracker) update(user id.UserID, fn func(st *state, now int64)) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	now := t.now().UnixMilli()
	st := t.get(user)
	prev := st.snapshot()
	fn(st, now)
	t.settleLocked(user, st, prev, now)
}

// settleLocked finishes an update: currently_active for local users, the
// notify decision, the timer. It unlocks t.mu.
func (t *Tracker) settleLocked(user id.UserID, st *state, prev snapshot, now int64) {
	if t.local(user) {
		st.currentlyActive = st.presence == Online && now-st.lastActive < t.t.ActiveGranularity.Milliseconds()
	}
	notify := t.shouldNotify(prev, st.snapshot())
	if notify && t.local(user) {
		st.lastFederation = now
	}
	t.armLocked(user, st, now)
	snap := st.snapshot()
	t.mu.Unlock()
	if notify {
		t.enqueue(item{user: user, snap: snap})
	}
}

// shouldNotify is Synapse's should_notify: a change of state or status
// message, of currently_active while online, or a bump of last_active
// beyond the granularity that currently_active does not already tell.
func (t *Tracker) shouldNotify(old, cur snapshot) bool {
	if old.presence != cur.presence || !sameMsg(old.statusMsg, cur.statusMsg) {
		return true
	}
	bumped := cur.lastActive-old.lastActive > t.t.ActiveGranularity.Milliseconds()
	if old.presence == Online {
		return old.currentlyActive != cur.currentlyActive || (bumped && !cur.currentlyActive)
	}
	return bumped
}

func sameMsg(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// enqueue hands an item to the fan-out worker.
func (t *Tracker) enqueue(it item) {
	// Sent under workMu so that Close cannot close the channel meanwhile;
	// the worker never takes workMu, so a full channel drains.
	t.workMu.RLock()
	defer t.workMu.RUnlock()
	if t.workClosed {
		return
	}
	t.work <- it
}

// armLocked makes sure the user's timer fires no later than their next
// deadline, as Synapse's wheel timer would. A timer armed for earlier is
// left alone: when it fires, timeout finds nothing to do and arms it again.
// So a sync, which moves the deadline later each time, costs no timer
// reset. t.mu must be held.
func (t *Tracker) armLocked(user id.UserID, st *state, now int64) {
	next := t.deadline(user, st)
	if next == 0 {
		if st.presence == Offline && st.syncing == 0 && st.statusMsg == nil {
			// An offline user without a message needs no entry: Get
			// answers offline for users it does not know.
			if st.timer != nil {
				st.timer.Stop()
			}
			delete(t.users, user)
		}
		return
	}
	if st.timerAt != 0 && st.timerAt <= next {
		return
	}
	st.timerAt = next
	d := time.Duration(max(next-now, 0)) * time.Millisecond
	if st.timer == nil {
		st.timer = time.AfterFunc(d, func() { t.timeout(user) })
		return
	}
	st.timer.Reset(d)
}

// deadline is the earliest time at which handleTimeout may change the
// user's presence, or 0.
func (t *Tracker) deadline(user id.UserID, st *state) int64 {
	if st.presence == Offline {
		return 0
	}
	var next int64
	at := func(ts int64) {
		// One past the deadline: timeout compares with >, and a timer
		// firing on the deadline itself would find nothing to do yet.
		ts++
		if next == 0 || ts < next {
			next = ts
		}
	}
	if !t.local(user) {
		at(st.lastFederation + t.t.Federation.Milliseconds())
		return next
	}
	if st.presence == Online {
		if st.currentlyActive {
			at(st.lastActive + t.t.ActiveGranularity.Milliseconds())
		}
		at(st.lastActive + t.t.Idle.Milliseconds())
	}
	if st.syncing == 0 {
		at(max(st.lastSync, st.lastActive) + t.t.SyncOnline.Milliseconds())
	}
	if t.edus != nil {
		at(st.lastFederation + t.t.FederationPing.Milliseconds())
	}
	return next
}

// timeout runs on the user's timer: Synapse's handle_timeout.
func (t *Tracker) timeout(user id.UserID) {
	t.mu.Lock()
	st := t.users[user]
	if t.closed || st == nil {
		t.mu.Unlock()
		return
	}
	now := t.now().UnixMilli()
	st.timerAt = 0
	prev := st.snapshot()
	ping := false
	if t.local(user) {
		if st.presence == Online && now-st.lastActive > t.t.Idle.Milliseconds() {
			st.presence = Unavailable
		}
		if st.syncing == 0 && now-max(st.lastSync, st.lastActive) > t.t.SyncOnline.Milliseconds() {
			st.presence = Offline
		}
		ping = st.presence != Offline && now-st.lastFederation >= t.t.FederationPing.Milliseconds()
	} else if now-st.lastFederation >= t.t.Federation.Milliseconds() {
		st.presence = Offline
	}
	if ping && !t.shouldNotifyLocked(user, st, prev, now) {
		st.lastFederation = now
		snap := st.snapshot()
		t.armLocked(user, st, now)
		t.mu.Unlock()
		t.enqueue(item{user: user, snap: snap, ping: true})
		return
	}
	t.settleLocked(user, st, prev, now)
}

// shouldNotifyLocked is shouldNotify with currently_active brought up to
// date first.
func (t *Tracker) shouldNotifyLocked(user id.UserID, st *state, prev snapshot, now int64) bool {
	if t.local(user) {
		st.currentlyActive = st.presence == Online && now-st.lastActive < t.t.ActiveGranularity.Milliseconds()
	}
	return t.shouldNotify(prev, st.snapshot())
}

// Serial returns the serial of the newest announced change.
func (t *Tracker) Serial() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.serial
}

// Event is one user's presence for a /sync response.
type Event struct {
	User   id.UserID
	Status Status
}

// Changes returns, for viewer, the presence announced in (since, upto] of
// the users whose changes woke them (those sharing a room with them, and
// viewer themself), sorted by user. A since of 0, or one older than the
// change log, gives instead the current presence of every user whose
// latest change woke viewer, or for whom shares says so, leaving out
// offline users in an initial sync (since 0), as Synapse does.
func (t *Tracker) Changes(ctx context.Context, viewer id.UserID, since, upto int64) ([]Event, error) {
	if !t.enabled {
		return nil, nil
	}
	now := t.now().UnixMilli()
	t.mu.Lock()
	if since >= t.floor && since <= t.serial {
		latest := map[id.UserID]snapshot{}
		i := sort.Search(len(t.changes), func(i int) bool { return t.changes[i].serial > since })
		for ; i < len(t.changes) && t.changes[i].serial <= upto; i++ {
			c := t.changes[i]
			if c.user == viewer || c.audience[viewer] {
				latest[c.user] = c.snap
			}
		}
		t.mu.Unlock()
		return events(latest, now), nil
	}
	// Every state: the log does not reach back to since.
	all := make(map[id.UserID]snapshot, len(t.users))
	for u, st := range t.users {
		if since == 0 && st.presence == Offline {
			continue
		}
		all[u] = st.snapshot()
	}
	t.mu.Unlock()
	if len(all) == 0 {
		return nil, nil
	}
	shared, err := sharedUsers(ctx, t.db, viewer)
	if err != nil {
		return nil, err
	}
	for u := range all {
		if u != viewer && !shared[u] {
			delete(all, u)
		}
	}
	return events(all, now), nil
}

func events(m map[id.UserID]snapshot, now int64) []Event {
	out := make([]Event, 0, len(m))
	for u, s := range m {
		out = append(out, Event{User: u, Status: render(s, now)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

// Visible reports whether observer may see user's presence: themself, or
// a user sharing a joined room with them (Synapse's is_visible).
func (t *Tracker) Visible(ctx context.Context, observer, user id.UserID) (bool, error) {
	if observer == user {
		return true, nil
	}
	return shareRoom(ctx, t.db, observer, user)
}
