package typing

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
)

const (
	alice = id.UserID("@alice:x")
	bob   = id.UserID("@bob:x")
	carol = id.UserID("@carol:x") // joined to no room
	room1 = id.RoomID("!one:x")
	room2 = id.RoomID("!two:x")
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// joinedBoth says alice and bob are joined to every room.
func joinedBoth(ctx context.Context, roomID id.RoomID) ([]id.UserID, error) {
	return []id.UserID{alice, bob}, nil
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newFake(t *testing.T) (*Tracker, *fakeClock, *notifier.Notifier) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	n := notifier.New()
	tr := newTracker(n, joinedBoth, discard(), clock.now)
	t.Cleanup(tr.Close)
	return tr, clock, n
}

func TestStartStopAndSerials(t *testing.T) {
	ctx := context.Background()
	tr, _, _ := newFake(t)
	start := tr.Serial()
	if start != time.Unix(1_700_000_000, 0).UnixMilli() {
		t.Fatalf("initial serial = %d, want the clock in Unix ms", start)
	}
	if users, serial := tr.Room(room1); len(users) != 0 || serial != 0 {
		t.Fatalf("untouched room: users %v serial %d, want none and 0", users, serial)
	}

	type step struct {
		name       string
		do         func()
		wantUsers  []id.UserID
		wantChange bool
	}
	steps := []step{
		{"alice starts", func() { tr.Start(ctx, room1, alice, 30*time.Second) }, []id.UserID{alice}, true},
		{"alice refreshes", func() { tr.Start(ctx, room1, alice, 30*time.Second) }, []id.UserID{alice}, false},
		{"bob starts", func() { tr.Start(ctx, room1, bob, time.Second) }, []id.UserID{alice, bob}, true},
		{"alice stops", func() { tr.Stop(ctx, room1, alice) }, []id.UserID{bob}, true},
		{"alice stops again", func() { tr.Stop(ctx, room1, alice) }, []id.UserID{bob}, false},
		{"carol stops in a room she never typed in", func() { tr.Stop(ctx, room2, carol) }, []id.UserID{bob}, false},
		{"bob starts with zero timeout", func() { tr.Start(ctx, room1, bob, 0) }, nil, true},
	}
	last := start
	for _, s := range steps {
		s.do()
		users, serial := tr.Room(room1)
		if !slices.Equal(users, s.wantUsers) {
			t.Errorf("%s: users = %v, want %v", s.name, users, s.wantUsers)
		}
		if changed := serial > last; changed != s.wantChange {
			t.Errorf("%s: room serial %d after %d: changed = %v, want %v", s.name, serial, last, changed, s.wantChange)
		}
		if s.wantChange && tr.Serial() != serial {
			t.Errorf("%s: global serial %d, want the room's %d", s.name, tr.Serial(), serial)
		}
		last = max(last, serial)
	}
	if users, serial := tr.Room(room2); len(users) != 0 || serial != 0 {
		t.Errorf("room2 changed by room1's typing: %v, %d", users, serial)
	}
}

func TestChangesWakeJoinedUsers(t *testing.T) {
	ctx := context.Background()
	tr, _, n := newFake(t)
	steps := []struct {
		name string
		do   func()
		wake bool
	}{
		{"start", func() { tr.Start(ctx, room1, alice, time.Minute) }, true},
		{"refresh", func() { tr.Start(ctx, room1, alice, time.Minute) }, false},
		{"stop", func() { tr.Stop(ctx, room1, alice) }, true},
		{"stop again", func() { tr.Stop(ctx, room1, alice) }, false},
	}
	for _, s := range steps {
		gens := map[id.UserID]uint64{alice: n.Generation(alice), bob: n.Generation(bob), carol: n.Generation(carol)}
		s.do()
		for _, u := range []id.UserID{alice, bob} {
			if woke := n.Generation(u) != gens[u]; woke != s.wake {
				t.Errorf("%s: %s woken = %v, want %v", s.name, u, woke, s.wake)
			}
		}
		if n.Generation(carol) != gens[carol] {
			t.Errorf("%s: carol, who is not joined, was woken", s.name)
		}
	}
}

func TestTimeoutIsCapped(t *testing.T) {
	ctx := context.Background()
	tr, clock, _ := newFake(t)
	tr.Start(ctx, room1, alice, time.Hour)
	clock.advance(MaxTimeout - time.Second)
	if users, _ := tr.Room(room1); !slices.Equal(users, []id.UserID{alice}) {
		t.Fatalf("before the cap: users = %v, want [alice]", users)
	}
	_, before := tr.Room(room1)
	clock.advance(2 * time.Second)
	if users, _ := tr.Room(room1); len(users) != 0 {
		t.Fatalf("after the cap: users = %v, want none (timeout capped at %v)", users, MaxTimeout)
	}
	tr.expire() // what the timer does
	if _, after := tr.Room(room1); after <= before {
		t.Fatalf("expiry did not bump the room serial: %d → %d", before, after)
	}
}

// TestExpiryWakesAndChangesSerial runs on the real clock: the timer, not the
// test, must end alice's typing and wake bob.
func TestExpiryWakesAndChangesSerial(t *testing.T) {
	n := notifier.New()
	tr := New(n, joinedBoth, discard())
	defer tr.Close()
	tr.Start(context.Background(), room1, alice, 50*time.Millisecond)
	_, started := tr.Room(room1)
	gen := n.Generation(bob)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if !n.Wait(ctx, bob, gen) {
			t.Fatal("bob was not woken by the typing timeout within 10s")
		}
		gen = n.Generation(bob)
		users, serial := tr.Room(room1)
		if len(users) == 0 && serial > started {
			break
		}
	}
	if tr.Serial() <= started {
		t.Fatalf("global serial %d did not move past %d", tr.Serial(), started)
	}
}

// TestCloseWaitsForExpiry checks that Close stops an expiry in progress and
// waits for it, so no goroutine outlives the Tracker.
func TestCloseWaitsForExpiry(t *testing.T) {
	called := make(chan struct{})
	returned := make(chan struct{})
	var once sync.Once
	blocking := func(ctx context.Context, roomID id.RoomID) ([]id.UserID, error) {
		if ctx.Value(ctxKey{}) != nil { // Start's own wake-up
			return nil, nil
		}
		once.Do(func() {
			defer close(returned)
			close(called)
			<-ctx.Done()
		})
		return nil, ctx.Err()
	}
	tr := New(notifier.New(), blocking, discard())
	tr.Start(context.WithValue(context.Background(), ctxKey{}, true), room1, alice, time.Millisecond)
	select {
	case <-called:
	case <-time.After(10 * time.Second):
		t.Fatal("expiry did not fire within 10s")
	}
	closed := make(chan struct{})
	go func() { tr.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the expiry's context was not cancelled")
	}
	select {
	case <-returned:
	default:
		t.Fatal("Close returned while the expiry was still running")
	}
	tr.Start(context.Background(), room1, bob, time.Minute)
	if users, _ := tr.Room(room1); len(users) != 0 {
		t.Fatalf("Start after Close changed state: %v", users)
	}
}

type ctxKey struct{}
