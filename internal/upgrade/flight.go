package upgrade

import (
	"context"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// resultMemory is how long a finished upgrade's answer is given again to
// the same request, as Synapse's response cache does: a client that
// retries after a timeout gets the room it already made, not a second
// replacement.
const resultMemory = 5 * time.Minute

// flightKey identifies one upgrade request.
type flightKey struct {
	room    id.RoomID
	user    id.UserID
	version id.RoomVersion
}

// flight is an upgrade in progress or recently finished.
type flight struct {
	key   flightKey
	done  chan struct{}
	newID id.RoomID
	err   error
	ended time.Time
}

// flights serialises upgrades per room: one at a time, and a repeat of a
// request in progress or just finished shares its answer.
type flights struct {
	mu     sync.Mutex
	byRoom map[id.RoomID]*flight
	recent map[flightKey]*flight
}

// do runs fn for key unless the same request is running or finished in
// the last resultMemory (then its answer is returned); another upgrade of
// the same room in progress is refused, as in Synapse.
func (f *flights) do(ctx context.Context, key flightKey, fn func() (id.RoomID, error)) (id.RoomID, error) {
	f.mu.Lock()
	if f.byRoom == nil {
		f.byRoom, f.recent = map[id.RoomID]*flight{}, map[flightKey]*flight{}
	}
	now := time.Now()
	for k, fl := range f.recent {
		if now.Sub(fl.ended) > resultMemory {
			delete(f.recent, k)
		}
	}
	if fl, ok := f.recent[key]; ok && fl.err == nil {
		f.mu.Unlock()
		return fl.newID, nil
	}
	if fl, ok := f.byRoom[key.room]; ok {
		f.mu.Unlock()
		if fl.key != key {
			return "", mxerr.Unknown.WithStatus(400).With("An upgrade for this room is currently in progress")
		}
		select {
		case <-fl.done:
			return fl.newID, fl.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	fl := &flight{key: key, done: make(chan struct{})}
	f.byRoom[key.room] = fl
	f.mu.Unlock()

	fl.newID, fl.err = fn()
	f.mu.Lock()
	fl.ended = time.Now()
	delete(f.byRoom, key.room)
	if fl.err == nil {
		f.recent[key] = fl
	}
	f.mu.Unlock()
	close(fl.done)
	return fl.newID, fl.err
}
