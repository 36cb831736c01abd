package pushers_test

// Delivery to push gateways, through the public interface: a pusher set
// over HTTP, a notification handed to the homeserver's Sink
// (Server.Pushers) inside a storage transaction as rule evaluation does,
// and a real HTTP server in the test acting as the gateway.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/pushers"
	"github.com/myelin-chat/myelin/internal/storage"
)

// gateway is a push gateway: it records each request's notification and
// answers with reply (200 {"rejected": []} when nil).
type gateway struct {
	*httptest.Server
	mu    sync.Mutex
	got   []map[string]any
	reply func(n int) (int, string)
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != pushers.NotifyPath || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("gateway got %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		raw, _ := io.ReadAll(r.Body)
		var body struct {
			Notification map[string]any `json:"notification"`
		}
		if err := json.Unmarshal(raw, &body); err != nil || body.Notification == nil {
			t.Errorf("gateway got %q", raw)
		}
		g.mu.Lock()
		g.got = append(g.got, body.Notification)
		n, reply := len(g.got), g.reply
		g.mu.Unlock()
		status, resp := 200, `{"rejected":[]}`
		if reply != nil {
			status, resp = reply(n)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, resp)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gateway) setReply(f func(n int) (int, string)) {
	g.mu.Lock()
	g.reply = f
	g.mu.Unlock()
}

func (g *gateway) requests() []map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]map[string]any(nil), g.got...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func allowPrivate(c *config.Config) { c.Push.AllowPrivate = true }

// setPusher sets an http pusher of cli pointing at url with extra data.
func setPusher(t *testing.T, cli *mautrix.Client, pushkey, url string, data map[string]any) {
	t.Helper()
	d := map[string]any{"url": url}
	for k, v := range data {
		d[k] = v
	}
	body := map[string]any{
		"kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
		"app_display_name": "App", "device_display_name": "Phone", "lang": "en", "data": d,
	}
	if _, err := cli.MakeRequest(context.Background(), http.MethodPost, cli.BuildClientURL("v3", "pushers", "set"), body, nil); err != nil {
		t.Fatalf("setting a pusher: %v", err)
	}
}

// scene is a room where bob sends alice a message.
type scene struct {
	srv   *mxtest.Server
	alice *mautrix.Client
	room  id.RoomID
	msg   id.EventID
	event json.RawMessage
}

func newScene(t *testing.T, engine string, opts ...mxtest.Option) *scene {
	t.Helper()
	ctx := context.Background()
	// These tests hand notifications to the Sink themselves: rule
	// evaluation, which would push bob's message as well, is off.
	noEval := func(c *config.Config) { c.Notifications.EvaluatePushRules = false }
	srv := mxtest.Start(t, engine, append([]mxtest.Option{noEval}, opts...)...)
	alice, bob := srv.Client("alice"), srv.Client("bob")
	if err := bob.SetDisplayName(ctx, "Major Tom"); err != nil {
		t.Fatal(err)
	}
	alias := "mission" + strings.ToLower(alice.UserID.Localpart())
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Mission Control", RoomAliasName: alias, Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
		t.Fatal(err)
	}
	sent, err := bob.SendText(ctx, created.RoomID, "I'm floating in a most peculiar way.")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := alice.GetEvent(ctx, created.RoomID, sent.EventID)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &scene{srv: srv, alice: alice, room: created.RoomID, msg: sent.EventID, event: raw}
}

// notify hands alice's notifications of eventIDs (in stream order; the
// message by default) to the Sink in one write transaction, as rule
// evaluation does: newest first, each with its stream position.
func (sc *scene) notify(t *testing.T, eventIDs ...id.EventID) {
	t.Helper()
	if len(eventIDs) == 0 {
		eventIDs = []id.EventID{sc.msg}
	}
	ctx := context.Background()
	err := sc.srv.DB().WriteTx(ctx, func(tx *storage.Tx) error {
		for i := len(eventIDs) - 1; i >= 0; i-- {
			n := push.Notification{
				UserID: sc.alice.UserID, RoomID: sc.room, EventID: eventIDs[i], Event: sc.event, StreamPos: int64(1000 + i),
				Actions: []json.RawMessage{json.RawMessage(`"notify"`), json.RawMessage(`{"set_tweak":"sound","value":"default"}`)},
				Tweaks:  map[string]any{"sound": "default"},
				Unread:  3,
			}
			if err := sc.srv.Pushers.Notified(ctx, tx, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Notified: %v", err)
	}
}

func (sc *scene) pushkeys(t *testing.T) []string {
	t.Helper()
	resp, err := sc.alice.GetPushers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range resp.Pushers {
		out = append(out, p.PushKey)
	}
	return out
}

func TestDeliveryFullFormat(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		gw := newGateway(t)
		sc := newScene(t, engine, allowPrivate)
		before := time.Now().Unix()
		setPusher(t, sc.alice, "key-full", gw.URL+pushers.NotifyPath, map[string]any{"custom": "x"})
		sc.notify(t)
		waitFor(t, "the gateway to get the push", 10*time.Second, func() bool { return len(gw.requests()) == 1 })

		n := gw.requests()[0]
		alias := "#mission" + strings.ToLower(sc.alice.UserID.Localpart()) + ":localhost"
		for k, want := range map[string]any{
			"event_id": sc.msg.String(), "room_id": sc.room.String(), "type": "m.room.message",
			"sender_display_name": "Major Tom", "room_name": "Mission Control", "room_alias": alias, "prio": "high",
		} {
			if n[k] != want {
				t.Errorf("notification %s = %v, want %v", k, n[k], want)
			}
		}
		if s, _ := n["sender"].(string); !strings.HasPrefix(s, "@bob") {
			t.Errorf("sender = %v", n["sender"])
		}
		if c, _ := n["content"].(map[string]any); c["body"] != "I'm floating in a most peculiar way." || c["msgtype"] != "m.text" {
			t.Errorf("content = %v", n["content"])
		}
		if c, _ := n["counts"].(map[string]any); c["unread"] != 3.0 || len(c) != 1 {
			t.Errorf("counts = %v", n["counts"])
		}
		if _, ok := n["user_is_target"]; ok {
			t.Errorf("user_is_target on a message: %v", n)
		}
		devs, _ := n["devices"].([]any)
		if len(devs) != 1 {
			t.Fatalf("devices = %v", n["devices"])
		}
		d := devs[0].(map[string]any)
		if d["app_id"] != "org.example.app" || d["pushkey"] != "key-full" {
			t.Errorf("device = %v", d)
		}
		if ts, _ := d["pushkey_ts"].(float64); int64(ts) < before-1 || int64(ts) > time.Now().Unix()+1 {
			t.Errorf("pushkey_ts = %v, want seconds since the epoch about %d", d["pushkey_ts"], before)
		}
		if data, _ := d["data"].(map[string]any); len(data) != 1 || data["custom"] != "x" {
			t.Errorf("device data = %v, want the pusher's data minus url", d["data"])
		}
		if tw, _ := d["tweaks"].(map[string]any); len(tw) != 1 || tw["sound"] != "default" {
			t.Errorf("tweaks = %v", d["tweaks"])
		}
		waitFor(t, "the queue to drain", 5*time.Second, func() bool { return sc.srv.Pushers.Stats().Delivered == 1 })
	})
}

func TestDeliveryEventIDOnly(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		gw := newGateway(t)
		sc := newScene(t, engine, allowPrivate)
		setPusher(t, sc.alice, "key-id", gw.URL+pushers.NotifyPath, map[string]any{"format": "event_id_only"})
		sc.notify(t)
		waitFor(t, "the gateway to get the push", 10*time.Second, func() bool { return len(gw.requests()) == 1 })

		n := gw.requests()[0]
		if n["event_id"] != sc.msg.String() || n["room_id"] != sc.room.String() || n["prio"] != "high" {
			t.Errorf("notification = %v", n)
		}
		for _, k := range []string{"type", "sender", "content", "sender_display_name", "room_name", "room_alias"} {
			if _, ok := n[k]; ok {
				t.Errorf("event_id_only notification has %s: %v", k, n)
			}
		}
		if c, _ := n["counts"].(map[string]any); c["unread"] != 3.0 {
			t.Errorf("counts = %v", n["counts"])
		}
		d := n["devices"].([]any)[0].(map[string]any)
		if data, _ := d["data"].(map[string]any); len(data) != 1 || data["format"] != "event_id_only" {
			t.Errorf("device data = %v, want the format kept", d["data"])
		}
		if _, ok := d["tweaks"]; ok {
			t.Errorf("event_id_only device has tweaks: %v", d)
		}
	})
}

func TestDeliveryRetriesInOrder(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		gw := newGateway(t)
		gw.setReply(func(n int) (int, string) {
			if n == 1 {
				return 500, `{"errcode":"M_UNKNOWN"}`
			}
			return 200, `{"rejected":[]}`
		})
		sc := newScene(t, engine, allowPrivate)
		setPusher(t, sc.alice, "key-retry", gw.URL+pushers.NotifyPath, nil)
		second, third := id.EventID("$second"), id.EventID("$third")
		sc.notify(t, sc.msg, second, third)
		waitFor(t, "the retry and the rest", 15*time.Second, func() bool { return len(gw.requests()) == 4 })
		var order []string
		for _, n := range gw.requests() {
			order = append(order, n["event_id"].(string))
		}
		want := []string{sc.msg.String(), sc.msg.String(), second.String(), third.String()}
		if strings.Join(order, " ") != strings.Join(want, " ") {
			t.Errorf("gateway got %v, want %v (the failed one retried first, then the rest in stream order)", order, want)
		}
		waitFor(t, "the queue to drain", 5*time.Second, func() bool {
			st := sc.srv.Pushers.Stats()
			return st.Delivered == 3 && st.Failed == 1
		})
	})
}

func TestDeliverySurvivesRestart(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		gw := newGateway(t)
		gw.setReply(func(int) (int, string) { return 503, `{}` })
		sc := newScene(t, engine, allowPrivate)
		setPusher(t, sc.alice, "key-restart", gw.URL+pushers.NotifyPath, nil)
		sc.notify(t)
		waitFor(t, "a failed attempt", 10*time.Second, func() bool { return len(gw.requests()) >= 1 })
		sc.srv.Restart()
		gw.setReply(nil)
		n := len(gw.requests())
		// The queued notification is sent again at start.
		waitFor(t, "delivery after the restart", 10*time.Second, func() bool { return sc.srv.Pushers.Stats().Delivered == 1 })
		got := gw.requests()
		if len(got) <= n || got[len(got)-1]["event_id"] != sc.msg.String() {
			t.Errorf("after restart the gateway got %v", got[n:])
		}
	})
}

func TestDeliveryRejectedPushkey(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		gw := newGateway(t)
		gw.setReply(func(int) (int, string) { return 200, `{"rejected":["key-gone"]}` })
		sc := newScene(t, engine, allowPrivate)
		setPusher(t, sc.alice, "key-gone", gw.URL+pushers.NotifyPath, nil)
		setPusher(t, sc.alice, "key-stays", gw.URL+pushers.NotifyPath, nil)
		sc.notify(t)
		waitFor(t, "the rejected pusher to go", 10*time.Second, func() bool {
			keys := sc.pushkeys(t)
			return len(keys) == 1 && keys[0] == "key-stays"
		})
		// key-stays was told too; a pushkey it did not send is ignored.
		waitFor(t, "both deliveries", 10*time.Second, func() bool { return sc.srv.Pushers.Stats().Delivered == 2 })
		if st := sc.srv.Pushers.Stats(); st.Rejected != 1 {
			t.Errorf("stats = %+v, want one rejected pusher", st)
		}
		if keys := sc.pushkeys(t); len(keys) != 1 {
			t.Errorf("pushers = %v, want key-stays only", keys)
		}
	})
}

func TestDeliveryRefusesPrivateGateway(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		gw := newGateway(t)
		sc := newScene(t, engine) // push.allow_private is off by default
		setPusher(t, sc.alice, "key-private", gw.URL+pushers.NotifyPath, nil)
		sc.notify(t)
		waitFor(t, "a refused attempt", 10*time.Second, func() bool { return sc.srv.Pushers.Stats().Failed >= 1 })
		if got := gw.requests(); len(got) != 0 {
			t.Errorf("a gateway on loopback got %d requests without push.allow_private", len(got))
		}
		if st := sc.srv.Pushers.Stats(); st.Delivered != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}
