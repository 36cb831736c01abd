package homeserver_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// seenPresence is one m.presence event of a sync response.
type seenPresence struct {
	presence        string
	statusMsg       string
	currentlyActive bool
	hasLastActive   bool
}

// presenceOf returns the m.presence events of resp by sender.
func presenceOf(resp *mautrix.RespSync) map[id.UserID]seenPresence {
	out := map[id.UserID]seenPresence{}
	for _, ev := range resp.Presence.Events {
		if ev.Type != event.EphemeralEventPresence {
			continue
		}
		var p seenPresence
		p.presence, _ = ev.Content.Raw["presence"].(string)
		p.statusMsg, _ = ev.Content.Raw["status_msg"].(string)
		p.currentlyActive, _ = ev.Content.Raw["currently_active"].(bool)
		_, p.hasLastActive = ev.Content.Raw["last_active_ago"]
		out[ev.Sender] = p
	}
	return out
}

// presenceWatcher follows one client's presence section with long-polls
// that do not change the client's own presence (set_presence=offline).
type presenceWatcher struct {
	t     *testing.T
	cli   *mautrix.Client
	since string
	// latest is the newest presence seen per user.
	latest map[id.UserID]seenPresence
}

func watchPresence(t *testing.T, cli *mautrix.Client) *presenceWatcher {
	t.Helper()
	w := &presenceWatcher{t: t, cli: cli, latest: map[id.UserID]seenPresence{}}
	w.poll(0)
	return w
}

// poll runs one sync and returns the presence it carried.
func (w *presenceWatcher) poll(timeout time.Duration) map[id.UserID]seenPresence {
	w.t.Helper()
	resp, err := w.cli.SyncRequest(context.Background(), int(timeout.Milliseconds()), w.since, "", false, event.PresenceOffline)
	if err != nil {
		w.t.Fatalf("%s syncing: %v", w.cli.UserID, err)
	}
	w.since = resp.NextBatch
	got := presenceOf(resp)
	for u, p := range got {
		w.latest[u] = p
	}
	return got
}

// await long-polls until cond holds for user's latest presence and returns
// how long it took, failing after limit.
func (w *presenceWatcher) await(what string, user id.UserID, limit time.Duration, cond func(seenPresence) bool) time.Duration {
	w.t.Helper()
	start := time.Now()
	for {
		if p, ok := w.latest[user]; ok && cond(p) {
			return time.Since(start)
		}
		left := limit - time.Since(start)
		if left <= 0 {
			w.t.Fatalf("%s: %s did not see it within %v (latest %+v)", what, w.cli.UserID, limit, w.latest[user])
		}
		w.poll(min(left, 5*time.Second))
	}
}

func is(state string) func(seenPresence) bool {
	return func(p seenPresence) bool { return p.presence == state }
}

// httpStatus is the status of a mautrix error, 0 for none.
func httpStatus(err error) int {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.Response != nil {
		return he.Response.StatusCode
	}
	return 0
}

func TestPresenceLocal(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine, func(c *config.Config) {
			c.Presence.Timeouts = config.PresenceTimeouts{Idle: 3 * time.Second, SyncOnline: time.Second}
		})
		alice, bob, stranger := srv.Client("alice"), srv.Client("bob"), srv.Client("stranger")
		roomID := publicRoom(t, alice, "", bob)
		w := watchPresence(t, bob)

		// A sync brings alice online; bob, sharing a room, sees it.
		if _, err := alice.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
			t.Fatal(err)
		}
		w.await("online after a sync", alice.UserID, 10*time.Second, func(p seenPresence) bool {
			return p.presence == "online" && p.currentlyActive && p.hasLastActive
		})
		got, err := bob.GetPresence(ctx, alice.UserID)
		if err != nil || got.Presence != event.PresenceOnline || !got.CurrentlyActive {
			t.Fatalf("GET alice's presence as bob: %+v, %v", got, err)
		}
		var initial struct {
			Presence []*event.Event `json:"presence"`
		}
		if _, err := bob.MakeRequest(ctx, http.MethodGet, bob.BuildClientURL("v3", "initialSync"), nil, &initial); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(initial.Presence, func(e *event.Event) bool {
			return e.Sender == alice.UserID && e.Content.Raw["presence"] == "online"
		}) {
			t.Errorf("/initialSync presence: %+v", initial.Presence)
		}

		// Further syncs of a user already online announce nothing.
		for range 3 {
			if _, err := alice.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
				t.Fatal(err)
			}
		}
		if p := w.poll(300 * time.Millisecond); len(p) != 0 {
			t.Errorf("syncs of an online user announced %+v", p)
		}

		// Visibility and errors, as in Synapse.
		if _, err := stranger.GetPresence(ctx, alice.UserID); httpStatus(err) != http.StatusForbidden {
			t.Errorf("GET by a user sharing no room: %v, want 403", err)
		}
		if _, err := bob.GetPresence(ctx, id.NewUserID("nobody", srv.Config.ServerName)); httpStatus(err) != http.StatusNotFound {
			t.Errorf("GET of an unknown user: %v, want 404", err)
		}
		_, err = bob.MakeRequest(ctx, http.MethodPut, bob.BuildClientURL("v3", "presence", alice.UserID, "status"),
			map[string]any{"presence": "offline"}, nil)
		if httpStatus(err) != http.StatusForbidden {
			t.Errorf("PUT of another user's presence: %v, want 403", err)
		}
		_, err = bob.MakeRequest(ctx, http.MethodPut, bob.BuildClientURL("v3", "presence", bob.UserID, "status"),
			map[string]any{"presence": "asleep"}, nil)
		if httpStatus(err) != http.StatusBadRequest {
			t.Errorf("PUT of an unknown state: %v, want 400", err)
		}
		if _, err := bob.SyncRequest(ctx, 0, "", "", false, "asleep"); httpStatus(err) != http.StatusBadRequest {
			t.Errorf("set_presence=asleep: %v, want 400", err)
		}

		// A status message.
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline, StatusMsg: "at lunch"}); err != nil {
			t.Fatal(err)
		}
		w.await("status_msg", alice.UserID, 10*time.Second, func(p seenPresence) bool { return p.statusMsg == "at lunch" })

		// Alice stops syncing: offline a second after her last sync.
		w.await("offline after the sync timeout", alice.UserID, 10*time.Second, is("offline"))

		// set_presence=unavailable on a sync.
		if _, err := alice.SyncRequest(ctx, 0, "", "", false, event.PresenceUnavailable); err != nil {
			t.Fatal(err)
		}
		w.await("set_presence=unavailable", alice.UserID, 10*time.Second, is("unavailable"))

		// Online again while she keeps syncing, then idle: unavailable after
		// three seconds without activity, though her syncs go on.
		stop := make(chan struct{})
		done := make(chan struct{})
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline}); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = alice.SyncRequest(ctx, 200, "", "", false, "")
			}
		}()
		defer func() { close(stop); <-done }()
		w.await("online", alice.UserID, 10*time.Second, is("online"))
		w.await("unavailable when idle", alice.UserID, 15*time.Second, is("unavailable"))
		// Sending a message is activity: online again.
		if _, err := alice.SendText(ctx, roomID, "back"); err != nil {
			t.Fatal(err)
		}
		w.await("online after sending", alice.UserID, 10*time.Second, is("online"))
		// Typing is activity too.
		w.await("unavailable when idle again", alice.UserID, 15*time.Second, is("unavailable"))
		if _, err := alice.UserTyping(ctx, roomID, true, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		w.await("online after typing", alice.UserID, 10*time.Second, is("online"))
	})
}

func TestPresenceFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 3)
		alice, dave := hs[0].Client("alice"), hs[0].Client("dave")
		bob := hs[1].Client("bob")
		carol := hs[2].Client("carol")
		// Alice shares a room with bob only; dave with carol only, so
		// alice's server knows carol's but shares no room of alice's with it.
		shared := publicRoom(t, alice, hs[0].Config.ServerName, bob)
		publicRoom(t, dave, hs[0].Config.ServerName, carol)
		atBob := watchPresence(t, bob)
		atAlice := watchPresence(t, alice)

		// PUT reaches bob's server within a second.
		start := time.Now()
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline, StatusMsg: "hello bob"}); err != nil {
			t.Fatal(err)
		}
		atBob.await("alice's PUT at bob's server", alice.UserID, 10*time.Second, func(p seenPresence) bool {
			return p.presence == "online" && p.statusMsg == "hello bob"
		})
		if d := time.Since(start); d > time.Second {
			t.Errorf("alice's presence took %v to reach bob", d)
		}
		got, err := bob.GetPresence(ctx, alice.UserID)
		if err != nil || got.Presence != event.PresenceOnline || got.StatusMsg != "hello bob" {
			t.Errorf("GET of remote alice: %+v, %v", got, err)
		}

		// set_presence on a sync too, the other way.
		start = time.Now()
		if _, err := bob.SyncRequest(ctx, 0, "", "", false, event.PresenceUnavailable); err != nil {
			t.Fatal(err)
		}
		atAlice.await("bob's set_presence at alice's server", bob.UserID, 10*time.Second, is("unavailable"))
		if d := time.Since(start); d > time.Second {
			t.Errorf("bob's presence took %v to reach alice", d)
		}

		// With carol's server down, what alice's server queues for it
		// shows what it would send: dave's presence, never alice's.
		hs[2].Down()
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "secret"}); err != nil {
			t.Fatal(err)
		}
		if err := dave.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline}); err != nil {
			t.Fatal(err)
		}
		queued := func() (string, error) {
			rows, err := hs[0].DB().QueryContext(ctx, `SELECT p.json FROM sender_queue q
				JOIN sender_payloads p ON p.payload_nid = q.payload_nid
				WHERE q.destination = $1 AND p.edu_type = 'm.presence'`, hs[2].Config.ServerName)
			if err != nil {
				return "", err
			}
			defer rows.Close()
			var all []string
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					return "", err
				}
				all = append(all, s)
			}
			return strings.Join(all, "\n"), rows.Err()
		}
		waitFor(t, "dave's presence queued for carol's server", func() (bool, error) {
			q, err := queued()
			return strings.Contains(q, dave.UserID.String()), err
		})
		if q, _ := queued(); strings.Contains(q, alice.UserID.String()) {
			t.Errorf("alice's presence queued for a server sharing no room with her:\n%s", q)
		}
		secret := func(p seenPresence) bool { return p.presence == "unavailable" && p.statusMsg == "secret" }
		atBob.await("alice unavailable at bob's", alice.UserID, 10*time.Second, secret)

		// Joining a room shows its members' presence at once, without
		// waiting for a change: to a local joiner on a server already in
		// the room, and to one whose server was not in it.
		erin := hs[1].Client("erin")
		atErin := watchPresence(t, erin)
		if _, err := erin.JoinRoomByID(ctx, shared); err != nil {
			t.Fatal(err)
		}
		atErin.await("alice's presence after joining her room", alice.UserID, 10*time.Second, secret)
		hs[2].Up()
		atCarol := watchPresence(t, carol)
		waitFor(t, "carol joins alice's room", func() (bool, error) {
			_, err := carol.JoinRoom(ctx, shared.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}})
			return err == nil, err
		})
		atCarol.await("alice's presence at a server that joined her room", alice.UserID, 10*time.Second, secret)
	})
}

func TestPresenceRemoteTimeout(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2, func(c *config.Config) {
			// Alice's server pings every second; bob's gives up on remote
			// users after two seconds of silence.
			c.Presence.Timeouts = config.PresenceTimeouts{FederationPing: time.Second, Federation: 2 * time.Second}
		})
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		publicRoom(t, alice, hs[0].Config.ServerName, bob)
		atBob := watchPresence(t, bob)
		// A sync: a user who never syncs goes offline at once, as in
		// Synapse; after this one she has 30 s.
		if _, err := alice.SyncRequest(ctx, 0, "", "", false, event.PresenceUnavailable); err != nil {
			t.Fatal(err)
		}
		atBob.await("alice unavailable", alice.UserID, 10*time.Second, is("unavailable"))
		// The pings keep her there past the timeout.
		deadline := time.Now().Add(4 * time.Second)
		for time.Now().Before(deadline) {
			if p := atBob.poll(time.Until(deadline)); p[alice.UserID].presence == "offline" {
				t.Fatal("a remote user timed out although her server kept pinging")
			}
		}
		// Her server goes away: offline after the federation timeout.
		hs[0].Down()
		atBob.await("alice offline after her server went quiet", alice.UserID, 15*time.Second, is("offline"))
	})
}

func TestPresenceDisabled(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine, func(c *config.Config) { c.Presence.Enabled = false })
		alice, bob := srv.Client("alice"), srv.Client("bob")
		publicRoom(t, alice, "", bob)
		w := watchPresence(t, bob)
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline, StatusMsg: "ignored"}); err != nil {
			t.Fatalf("PUT with presence off: %v", err)
		}
		if _, err := alice.SyncRequest(ctx, 0, "", "", false, event.PresenceUnavailable); err != nil {
			t.Fatal(err)
		}
		got, err := bob.GetPresence(ctx, alice.UserID)
		if err != nil || got.Presence != event.PresenceOffline || got.StatusMsg != "" {
			t.Errorf("GET with presence off: %+v, %v; want offline", got, err)
		}
		if p := w.poll(500 * time.Millisecond); len(p) != 0 {
			t.Errorf("presence synced while off: %+v", p)
		}
		resp, err := alice.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil || len(resp.Presence.Events) != 0 {
			t.Errorf("initial sync with presence off: %d presence events, %v", len(resp.Presence.Events), err)
		}
	})
}

func TestPresenceSurvivesRestart(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		publicRoom(t, alice, "", bob)
		if _, err := alice.SyncRequest(ctx, 0, "", "", false, ""); err != nil {
			t.Fatal(err)
		}
		if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: "brb"}); err != nil {
			t.Fatal(err)
		}
		srv.Restart()
		// The restarted server gives her the sync timeout to come back
		// before she goes offline; until then she is as she was.
		got, err := bob.GetPresence(ctx, alice.UserID)
		if err != nil || got.Presence != event.PresenceUnavailable || got.StatusMsg != "brb" {
			t.Fatalf("after a restart: %+v, %v; want unavailable, brb", got, err)
		}
		resp, err := bob.SyncRequest(ctx, 0, "", "", false, event.PresenceOffline)
		if err != nil {
			t.Fatal(err)
		}
		if p := presenceOf(resp)[alice.UserID]; p.presence != "unavailable" || p.statusMsg != "brb" {
			t.Errorf("initial sync after a restart: %+v", p)
		}
	})
}
