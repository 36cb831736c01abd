// Package typing keeps the typing notifications of the spec's "Typing
// Notifications" module: who is typing in which room, until when.
//
// Typing state is ephemeral and lives only in memory. Every visible change
// (a user starts, stops, or times out) takes the next value of one
// process-wide serial, which /sync tokens carry beside the stream position
// (clientsync.Token.Typing); a room's typing list goes into a sync response
// when the room's last change is newer than the token's serial. After each
// change the local users joined to the room are woken through the notifier.
//
// Flow: clientapi (PUT /rooms/{roomId}/typing/{userId}) → Tracker → notifier →
// clientsync reads Room and Serial. typing imports notifier only; it must not
// import room, storage, clientsync or clientapi (it is handed a JoinedFunc).
package typing

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
)

// MaxTimeout caps how long one request may mark a user as typing, as
// Synapse does, so a client cannot leave a user typing for hours.
const MaxTimeout = 120 * time.Second

// JoinedFunc lists the local users joined to a room: the users to wake when
// its typing list changes (room.Service.LocalJoined).
type JoinedFunc func(ctx context.Context, roomID id.RoomID) ([]id.UserID, error)

// Tracker holds the typing state of every room. Its methods are safe for
// concurrent use. Close stops its expiry timer.
type Tracker struct {
	notifier *notifier.Notifier
	joined   JoinedFunc
	log      *slog.Logger
	now      func() time.Time

	// ctx bounds the wake-ups sent on expiry; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	serial int64
	rooms  map[id.RoomID]*roomState
	// typing holds the rooms where someone is typing: the ones the expiry
	// timer has to look at.
	typing  map[id.RoomID]*roomState
	timer   *time.Timer
	timerAt time.Time // when timer fires; zero when it is not armed
	closed  bool
	firing  sync.WaitGroup
}

// roomState is one room's typing list. A room keeps its entry after
// everyone stops, so a sync can still tell that the stop happened.
type roomState struct {
	serial int64                   // serial of the room's last change
	users  map[id.UserID]time.Time // user → when their typing expires
}

// New returns a Tracker that wakes the users joined(roomID) lists through n
// whenever a room's typing list changes.
//
// The serial starts at the current Unix time in milliseconds, so serials
// keep growing across restarts and a token issued before a restart does not
// hide the changes made after it.
func New(n *notifier.Notifier, joined JoinedFunc, log *slog.Logger) *Tracker {
	return newTracker(n, joined, log, time.Now)
}

func newTracker(n *notifier.Notifier, joined JoinedFunc, log *slog.Logger, now func() time.Time) *Tracker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Tracker{
		notifier: n, joined: joined, log: log, now: now,
		ctx: ctx, cancel: cancel,
		serial: now().UnixMilli(),
		rooms:  make(map[id.RoomID]*roomState),
		typing: make(map[id.RoomID]*roomState),
	}
}

// Start marks user as typing in roomID for timeout (at most MaxTimeout),
// replacing any earlier timeout. Only a user who was not typing yet changes
// the room's list; a refresh just extends the expiry and wakes nobody.
func (t *Tracker) Start(ctx context.Context, roomID id.RoomID, user id.UserID, timeout time.Duration) {
	if timeout <= 0 {
		t.Stop(ctx, roomID, user)
		return
	}
	timeout = min(timeout, MaxTimeout)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	now := t.now()
	rs := t.rooms[roomID]
	if rs == nil {
		rs = &roomState{users: make(map[id.UserID]time.Time)}
		t.rooms[roomID] = rs
	}
	exp, was := rs.users[user]
	changed := !was || !exp.After(now)
	expires := now.Add(timeout)
	rs.users[user] = expires
	t.typing[roomID] = rs
	if changed {
		t.serial++
		rs.serial = t.serial
	}
	t.armLocked(expires, now)
	t.mu.Unlock()
	if changed {
		t.wake(ctx, roomID)
	}
}

// Stop marks user as no longer typing in roomID.
func (t *Tracker) Stop(ctx context.Context, roomID id.RoomID, user id.UserID) {
	t.mu.Lock()
	rs := t.rooms[roomID]
	if t.closed || rs == nil {
		t.mu.Unlock()
		return
	}
	if _, ok := rs.users[user]; !ok {
		t.mu.Unlock()
		return
	}
	delete(rs.users, user)
	if len(rs.users) == 0 {
		delete(t.typing, roomID)
	}
	t.serial++
	rs.serial = t.serial
	t.mu.Unlock()
	// The expiry timer stays armed; when it fires it finds nothing and
	// re-arms for the next expiry, if any.
	t.wake(ctx, roomID)
}

// Room returns the users typing in roomID, sorted, and the serial of the
// room's last change (0 if nobody ever typed there).
func (t *Tracker) Room(roomID id.RoomID) ([]id.UserID, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := t.rooms[roomID]
	if rs == nil {
		return nil, 0
	}
	now := t.now()
	users := make([]id.UserID, 0, len(rs.users))
	for u, exp := range rs.users {
		// An entry the timer has not removed yet is already over.
		if exp.After(now) {
			users = append(users, u)
		}
	}
	slices.Sort(users)
	return users, rs.serial
}

// Serial returns the serial of the newest change in any room.
func (t *Tracker) Serial() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.serial
}

// Close stops the expiry timer and waits for an expiry in progress to
// finish. Later calls to Start and Stop do nothing.
func (t *Tracker) Close() {
	t.mu.Lock()
	t.closed = true
	if t.timer != nil {
		t.timer.Stop()
	}
	t.mu.Unlock()
	t.cancel()
	t.firing.Wait()
}

// armLocked makes sure the expiry timer fires no later than at. t.mu must
// be held.
func (t *Tracker) armLocked(at, now time.Time) {
	if !t.timerAt.IsZero() && !at.Before(t.timerAt) {
		return
	}
	t.timerAt = at
	if t.timer == nil {
		t.timer = time.AfterFunc(at.Sub(now), t.expire)
		return
	}
	t.timer.Reset(at.Sub(now))
}

// expire runs on the timer: it drops the entries whose time is up, bumps
// the serial of each room that changed, wakes their users and re-arms the
// timer for the next expiry.
func (t *Tracker) expire() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.firing.Add(1)
	defer t.firing.Done()
	now := t.now()
	var changed []id.RoomID
	var next time.Time
	for roomID, rs := range t.typing {
		removed := false
		for u, exp := range rs.users {
			if !exp.After(now) {
				delete(rs.users, u)
				removed = true
			} else if next.IsZero() || exp.Before(next) {
				next = exp
			}
		}
		if removed {
			t.serial++
			rs.serial = t.serial
			changed = append(changed, roomID)
		}
		if len(rs.users) == 0 {
			delete(t.typing, roomID)
		}
	}
	t.timerAt = time.Time{}
	if !next.IsZero() {
		t.armLocked(next, now)
	}
	t.mu.Unlock()
	for _, roomID := range changed {
		t.wake(t.ctx, roomID)
	}
}

// wake notifies the local users joined to the room. It runs after the
// change is visible, as the notifier's ordering guarantee requires.
func (t *Tracker) wake(ctx context.Context, roomID id.RoomID) {
	users, err := t.joined(ctx, roomID)
	if err != nil {
		if ctx.Err() == nil {
			t.log.Warn("listing users to wake for typing change", "room_id", roomID, "err", err)
		}
		return
	}
	t.notifier.Notify(notifier.Typing, users...)
}
