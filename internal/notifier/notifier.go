// Package notifier wakes /sync requests that are waiting for something to
// happen to their user.
//
// Ordering guarantee: every writer calls Notify after its data is durable
// (storage runs it after commit, inside the write order), and a waiting sync
// reads its generation before it reads the database. So a sync that found
// nothing new and then waits on that generation cannot miss a wake-up: either
// it saw the data, or the generation moved and Wait returns at once.
//
// The notifier is in-process. Scaling out puts a broker behind the same
// methods. It imports nothing from Myelin but types from mautrix/id.
package notifier

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"
)

// Notifier tracks a wake-up generation per user.
type Notifier struct {
	mu    sync.Mutex
	users map[id.UserID]*entry
	// rooms holds a generation per room that someone waits on: those
	// peeking at a room they are not in (GET /events?room_id=) are not
	// among the users its events wake.
	rooms   map[id.RoomID]*entry
	wakeups atomic.Int64
	epoch   uint32
}

type entry struct {
	gen uint64
	ch  chan struct{} // closed and replaced on each wake-up
	// last holds, per kind, the generation of the kind's latest wake-up.
	last [numKinds]uint64
}

// Kind says what changed for the users a Notify call wakes, so that a
// sync can skip the sections nothing happened to.
type Kind uint16

// The kinds of change. A writer that is unsure passes All.
const (
	// Room: events in a room the user is (or was) in.
	Room Kind = 1 << iota
	// Membership: a membership changed in such a room, or the user's own
	// (invites and knocks included).
	Membership
	// AccountData: the user's account data.
	AccountData
	// Receipts: read receipts in the user's rooms.
	Receipts
	// ToDevice: a to-device message for one of the user's devices.
	ToDevice
	// DeviceLists: the keys of a user who shares a room with the user.
	DeviceLists
	// Typing: a typing list in the user's rooms.
	Typing
	// OneTimeKeys: the one-time or fallback keys of one of the user's
	// devices were uploaded or claimed.
	OneTimeKeys
	// Presence: the presence of the user or of a user sharing a room
	// with them.
	Presence
	// Notifications: the user's unread notification counts in a room
	// changed (push rule evaluation, a read receipt).
	Notifications

	numKinds = iota
	// All is every kind.
	All Kind = 1<<numKinds - 1
)

// New returns an empty Notifier.
func New() *Notifier {
	return &Notifier{users: make(map[id.UserID]*entry), rooms: make(map[id.RoomID]*entry), epoch: rand.Uint32()}
}

// Epoch identifies this notifier among those of other processes and
// earlier runs: generations start again at zero with each, so a
// generation handed out earlier means something only with its epoch.
func (n *Notifier) Epoch() uint32 { return n.epoch }

func (n *Notifier) get(u id.UserID) *entry {
	e := n.users[u]
	if e == nil {
		e = &entry{ch: make(chan struct{})}
		n.users[u] = e
	}
	return e
}

// Generation returns the user's current generation. Read it before reading
// the database, then pass it to Wait.
func (n *Notifier) Generation(u id.UserID) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.get(u).gen
}

// Wait blocks until the user's generation moves past gen or ctx ends. It
// reports whether a wake-up happened.
func (n *Notifier) Wait(ctx context.Context, u id.UserID, gen uint64) bool {
	n.mu.Lock()
	e := n.get(u)
	if e.gen != gen {
		n.mu.Unlock()
		return true
	}
	ch := e.ch
	n.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// Notify wakes every listed user for a change of the given kinds.
func (n *Notifier) Notify(kind Kind, users ...id.UserID) {
	if len(users) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range users {
		e := n.get(u)
		e.gen++
		for k := range numKinds {
			if kind&(1<<k) != 0 {
				e.last[k] = e.gen
			}
		}
		close(e.ch)
		e.ch = make(chan struct{})
	}
	n.wakeups.Add(int64(len(users)))
}

// ChangedSince returns the kinds of the user's wake-ups after generation
// gen of epoch. Everything before was seen by whoever read gen before
// reading the database. A generation of another epoch, or one this
// notifier never handed out, may hide anything: the answer is All.
func (n *Notifier) ChangedSince(u id.UserID, epoch uint32, gen uint64) Kind {
	if epoch != n.epoch {
		return All
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.users[u]
	if e == nil || gen > e.gen {
		return All
	}
	var out Kind
	for k := range numKinds {
		if e.last[k] > gen {
			out |= 1 << k
		}
	}
	return out
}

// RoomGeneration returns the room's generation, for a peek at a room
// (see rooms); read it before reading the database, then pass it to
// WaitRoom.
func (n *Notifier) RoomGeneration(r id.RoomID) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.rooms[r]
	if e == nil {
		e = &entry{ch: make(chan struct{})}
		n.rooms[r] = e
	}
	return e.gen
}

// WaitRoom blocks until the room's generation moves past gen or ctx ends.
// It reports whether a wake-up happened.
func (n *Notifier) WaitRoom(ctx context.Context, r id.RoomID, gen uint64) bool {
	n.mu.Lock()
	e := n.rooms[r]
	if e == nil || e.gen != gen {
		n.mu.Unlock()
		return true
	}
	ch := e.ch
	n.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// NotifyRoom wakes those waiting on the room's generation. Rooms no one
// has waited on cost nothing.
func (n *Notifier) NotifyRoom(r id.RoomID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.rooms[r]; e != nil {
		e.gen++
		close(e.ch)
		e.ch = make(chan struct{})
	}
}

// Wakeups returns how many user wake-ups have been issued, for metrics.
func (n *Notifier) Wakeups() int64 { return n.wakeups.Load() }
