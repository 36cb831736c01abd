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
	"sync"
	"sync/atomic"

	"maunium.net/go/mautrix/id"
)

// Notifier tracks a wake-up generation per user.
type Notifier struct {
	mu      sync.Mutex
	users   map[id.UserID]*entry
	wakeups atomic.Int64
}

type entry struct {
	gen uint64
	ch  chan struct{} // closed and replaced on each wake-up
}

// New returns an empty Notifier.
func New() *Notifier {
	return &Notifier{users: make(map[id.UserID]*entry)}
}

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

// Notify wakes every listed user.
func (n *Notifier) Notify(users ...id.UserID) {
	if len(users) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range users {
		e := n.get(u)
		e.gen++
		close(e.ch)
		e.ch = make(chan struct{})
	}
	n.wakeups.Add(int64(len(users)))
}

// Wakeups returns how many user wake-ups have been issued, for metrics.
func (n *Notifier) Wakeups() int64 { return n.wakeups.Load() }
