package presence

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
)

// clock is a settable clock for the policy tests.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Unix(1_800_000_000, 0)} }
func discard() *slog.Logger              { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func (s Status) active() bool            { return s.CurrentlyActive != nil && *s.CurrentlyActive }
func tracker(c *clock) *Tracker {
	return New(nil, notifier.New(), nil, nil, "here.example", discard(), Options{Enabled: true, Now: c.now})
}
func msg(s string) *string { return &s }
func (s Status) msg() string {
	if s.StatusMsg == nil {
		return ""
	}
	return *s.StatusMsg
}

// TestTimeouts walks Synapse's handle_timeout with a fake clock, calling
// the timer's function by hand at each deadline.
func TestTimeouts(t *testing.T) {
	c := newClock()
	tr := tracker(c)
	defer tr.Close()
	alice := id.NewUserID("alice", "here.example")
	check := func(what, want string, active bool) {
		t.Helper()
		if got := tr.Get(alice); got.Presence != want || got.active() != active {
			t.Fatalf("%s: %+v (active %v), want %s, active %v", what, got, got.active(), want, active)
		}
	}
	done := tr.Syncing(alice, "")
	check("first sync", Online, true)
	c.advance(ActiveGranularity + time.Second)
	tr.timeout(alice)
	check("a minute without activity", Online, false)
	tr.Active(alice)
	check("activity", Online, true)
	c.advance(IdleTimer + time.Second)
	tr.timeout(alice)
	check("idle while syncing", Unavailable, false)
	tr.Syncing(alice, "")() // a sync does not end idleness
	check("sync while idle", Unavailable, false)
	done()
	c.advance(SyncOnlineTimeout - time.Second)
	tr.timeout(alice)
	check("shortly after the last sync", Unavailable, false)
	c.advance(2 * time.Second)
	tr.timeout(alice)
	check("after the sync timeout", Offline, false)
	tr.Syncing(alice, Unavailable)()
	check("set_presence=unavailable", Unavailable, false)
	tr.Set(alice, Online, msg("hi"))
	if got := tr.Get(alice); got.msg() != "hi" || got.Presence != Online {
		t.Fatalf("PUT online with a message: %+v", got)
	}
	tr.Set(alice, Offline, msg("bye"))
	if got := tr.Get(alice); got.StatusMsg != nil || got.Presence != Offline {
		t.Fatalf("PUT offline clears the message: %+v", got)
	}

	// A remote user goes offline when their server falls silent.
	bob := id.NewUserID("bob", "there.example")
	tr.update(bob, func(st *state, now int64) { st.presence, st.lastFederation = Online, now })
	c.advance(FederationTimeout - time.Second)
	tr.timeout(bob)
	if got := tr.Get(bob).Presence; got != Online {
		t.Fatalf("remote user before the federation timeout: %s", got)
	}
	c.advance(2 * time.Second)
	tr.timeout(bob)
	if got := tr.Get(bob).Presence; got != Offline {
		t.Fatalf("remote user after the federation timeout: %s", got)
	}
}

func TestShouldNotify(t *testing.T) {
	tr := tracker(newClock())
	defer tr.Close()
	g := ActiveGranularity.Milliseconds()
	for _, tc := range []struct {
		name     string
		old, cur snapshot
		want     bool
	}{
		{"same", snapshot{presence: Online, currentlyActive: true, lastActive: 1}, snapshot{presence: Online, currentlyActive: true, lastActive: 1}, false},
		{"online, active, bump", snapshot{presence: Online, currentlyActive: true, lastActive: 1}, snapshot{presence: Online, currentlyActive: true, lastActive: 2 + g}, false},
		{"online, inactive, bump", snapshot{presence: Online, lastActive: 1}, snapshot{presence: Online, lastActive: 2 + g}, true},
		{"currently_active flips", snapshot{presence: Online, currentlyActive: true}, snapshot{presence: Online}, true},
		{"state", snapshot{presence: Online}, snapshot{presence: Unavailable}, true},
		{"message", snapshot{presence: Online}, snapshot{presence: Online, statusMsg: msg("x")}, true},
		{"offline, small bump", snapshot{presence: Offline, lastActive: 1}, snapshot{presence: Offline, lastActive: 2}, false},
		{"offline, bump", snapshot{presence: Offline, lastActive: 1}, snapshot{presence: Offline, lastActive: 2 + g}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tr.shouldNotify(tc.old, tc.cur); got != tc.want {
				t.Errorf("shouldNotify = %v, want %v", got, tc.want)
			}
		})
	}
}
