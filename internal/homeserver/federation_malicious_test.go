package homeserver_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/pdu"
)

// evilServer is a hand-driven federation peer: it serves its own keys and
// signs what it sends, so its requests authenticate, but the PDUs it
// builds are whatever the test wants.
type evilServer struct {
	name   string
	key    keys.SigningKey
	client *fedclient.Client
	// missing is what the server answers /get_missing_events with.
	missing atomic.Pointer[[]json.RawMessage]
	// edus are the EDUs received in transactions, in order.
	edusMu sync.Mutex
	edus   []receivedEDU
	// mux serves the server's routes; tests may add more.
	mux *http.ServeMux
}

// receivedEDU is an EDU the evil server was sent.
type receivedEDU struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// received returns the EDUs of type eduType received so far.
func (e *evilServer) received(eduType string) []json.RawMessage {
	e.edusMu.Lock()
	defer e.edusMu.Unlock()
	var out []json.RawMessage
	for _, edu := range e.edus {
		if edu.Type == eduType {
			out = append(out, edu.Content)
		}
	}
	return out
}

func startEvil(t *testing.T, ca *mxtest.TestCA) *evilServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	mux := http.NewServeMux()
	e := &evilServer{name: ln.Addr().String(), key: keys.SigningKey{ID: "ed25519:evil", Priv: priv}, mux: mux}
	mux.HandleFunc("GET /_matrix/key/v2/server", func(w http.ResponseWriter, r *http.Request) {
		doc, _ := json.Marshal(map[string]any{
			"server_name":     e.name,
			"valid_until_ts":  time.Now().Add(time.Hour).UnixMilli(),
			"verify_keys":     map[string]any{string(e.key.ID): map[string]string{"key": string(e.key.Public())}},
			"old_verify_keys": map[string]any{},
		})
		signed, err := e.key.SignJSON(e.name, doc)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(signed)
	})
	mux.HandleFunc("POST /_matrix/federation/v1/get_missing_events/{roomId}", func(w http.ResponseWriter, r *http.Request) {
		evs := []json.RawMessage{}
		if m := e.missing.Load(); m != nil {
			evs = *m
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"events": evs})
	})
	mux.HandleFunc("PUT /_matrix/federation/v1/send/{txnId}", func(w http.ResponseWriter, r *http.Request) {
		var txn struct {
			EDUs []receivedEDU `json:"edus"`
		}
		_ = json.NewDecoder(r.Body).Decode(&txn)
		e.edusMu.Lock()
		e.edus = append(e.edus, txn.EDUs...)
		e.edusMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"pdus":{}}`))
	})
	e.client = serveFakeServer(t, ca, ln, mux, e.name, e.key)
	return e
}

// serveFakeServer serves mux over TLS on ln, with a certificate for
// 127.0.0.1 from the test CA, until the test ends, and returns a
// federation client that signs as name with key: the two halves of a
// hand-driven peer.
func serveFakeServer(t *testing.T, ca *mxtest.TestCA, ln net.Listener, mux http.Handler, name string, key keys.SigningKey) *fedclient.Client {
	t.Helper()
	cert, err := ca.CA.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client, err := fedclient.New(config.Federation{ExtraCAFiles: []string{ca.CertFile}, AllowPrivate: true}, name, key,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// join makes mallory (a user of the evil server) join the room, the
// honest way, and returns the join event and the room state it was given.
func (e *evilServer) join(t *testing.T, victim string, roomID id.RoomID) (*pdu.Event, []*pdu.Event) {
	t.Helper()
	ctx := context.Background()
	user := id.UserID("@mallory:" + e.name)
	var tmpl struct {
		RoomVersion id.RoomVersion  `json:"room_version"`
		Event       json.RawMessage `json:"event"`
	}
	path := "/_matrix/federation/v1/make_join/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(user.String())
	if err := e.client.Do(ctx, victim, "GET", path, url.Values{"ver": {"12"}}, nil, &tmpl); err != nil {
		t.Fatalf("make_join: %v", err)
	}
	join, err := pdu.FromTemplate(tmpl.RoomVersion, tmpl.Event, json.RawMessage(`{"membership":"join"}`), time.Now().UnixMilli(), e.name, e.key.ID, e.key.Priv)
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		State []json.RawMessage `json:"state"`
	}
	path = "/_matrix/federation/v2/send_join/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(join.ID.String())
	if err := e.client.Do(ctx, victim, "PUT", path, nil, json.RawMessage(join.JSON()), &resp); err != nil {
		t.Fatalf("send_join: %v", err)
	}
	var state []*pdu.Event
	for _, raw := range resp.State {
		ev, err := pdu.Parse(tmpl.RoomVersion, raw)
		if err != nil {
			t.Fatal(err)
		}
		state = append(state, ev)
	}
	return join, state
}

// build makes a correctly signed event of mallory's after prev.
func (e *evilServer) build(t *testing.T, roomID id.RoomID, prev *pdu.Event, auth []id.EventID, evType string, stateKey *string, content any) *pdu.Event {
	t.Helper()
	raw, _ := json.Marshal(content)
	ev, err := pdu.Build(pdu.Proto{Type: evType, StateKey: stateKey, Sender: id.UserID("@mallory:" + e.name), Content: raw, RoomID: roomID},
		pdu.BuildArgs{Version: "12", AuthEvents: auth, PrevEvents: []id.EventID{prev.ID}, Depth: prev.Depth + 1,
			Timestamp: time.Now().UnixMilli(), ServerName: e.name, KeyID: e.key.ID, Key: e.key.Priv})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

var evilTxn int

// send pushes one raw PDU in its own transaction and returns the per-PDU
// error the victim reported ("" for accepted).
func (e *evilServer) send(t *testing.T, victim string, raw json.RawMessage) string {
	t.Helper()
	evilTxn++
	return e.sendTxn(t, victim, fmt.Sprintf("evil%d", evilTxn), raw)
}

// sendTxn pushes one raw PDU in the transaction txnID.
func (e *evilServer) sendTxn(t *testing.T, victim, txnID string, raw json.RawMessage) string {
	t.Helper()
	body := map[string]any{"origin": e.name, "origin_server_ts": time.Now().UnixMilli(), "pdus": []json.RawMessage{raw}, "edus": []any{}}
	var resp struct {
		PDUs map[string]struct {
			Error string `json:"error"`
		} `json:"pdus"`
	}
	if err := e.client.Do(context.Background(), victim, "PUT", "/_matrix/federation/v1/send/"+txnID, nil, body, &resp); err != nil {
		t.Fatalf("send: %v", err)
	}
	for _, r := range resp.PDUs {
		return r.Error
	}
	return "no result"
}

// mutate returns ev's JSON with f applied to its decoded form.
func mutate(t *testing.T, ev *pdu.Event, f func(m map[string]any)) json.RawMessage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev.JSON(), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, _ := json.Marshal(m)
	return out
}

// evilRoom is a public room of alice's on the victim server that the
// evil server's mallory has joined.
type evilRoom struct {
	victim  string
	alice   *mautrix.Client
	roomID  id.RoomID
	evil    *evilServer
	join    *pdu.Event
	msgAuth []id.EventID // the auth events of a message of mallory's
}

func startEvilRoom(t *testing.T, engine string) evilRoom {
	t.Helper()
	hs := mxtest.Federation(t, engine, 1)
	r := evilRoom{victim: hs[0].Config.ServerName, alice: hs[0].Client("alice")}
	created, err := r.alice.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	r.roomID = created.RoomID
	r.evil = startEvil(t, hs[0].TestCA)
	var state []*pdu.Event
	r.join, state = r.evil.join(t, r.victim, r.roomID)
	var plID id.EventID
	for _, s := range state {
		if s.Type == "m.room.power_levels" {
			plID = s.ID
		}
	}
	r.msgAuth = []id.EventID{plID, r.join.ID}
	return r
}

func TestMaliciousServerIsRefused(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		r := startEvilRoom(t, engine)
		victim, alice, roomID, evil, join, msgAuth := r.victim, r.alice, r.roomID, r.evil, r.join, r.msgAuth
		plBefore := map[string]any{}
		if err := alice.StateEvent(ctx, roomID, event.StatePowerLevels, "", &plBefore); err != nil {
			t.Fatal(err)
		}

		good := evil.build(t, roomID, join, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "hello"})
		txnID := fmt.Sprintf("good-%s", engine)
		if errText := evil.sendTxn(t, victim, txnID, good.JSON()); errText != "" {
			t.Fatalf("a valid event was refused: %s", errText)
		}
		// A transaction ID already used is answered from memory and not
		// processed again, so a different PDU sent under it is never seen
		// (alice's messages are checked below).
		sneaky := evil.build(t, roomID, good, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "sneaky"})
		if errText := evil.sendTxn(t, victim, txnID, sneaky.JSON()); errText != "" {
			t.Fatalf("a retried transaction was refused: %s", errText)
		}

		bad := []struct {
			name string
			raw  json.RawMessage
		}{
			{"forged signature", mutate(t, evil.build(t, roomID, good, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "forged"}),
				func(m map[string]any) {
					sigs := m["signatures"].(map[string]any)[evil.name].(map[string]any)
					other := make([]byte, ed25519.SignatureSize)
					sigs[string(evil.key.ID)] = base64.RawStdEncoding.EncodeToString(other)
				})},
			{"fails auth", evil.build(t, roomID, good, msgAuth, "m.room.power_levels", new(string),
				map[string]any{"users": map[string]int{"@mallory:" + evil.name: 100}}).JSON()},
			{"oversized", evil.build(t, roomID, good, msgAuth, "m.room.message", nil,
				map[string]any{"msgtype": "m.text", "body": strings.Repeat("x", 70000)}).JSON()},
			{"wrong version format", mutate(t, evil.build(t, roomID, good, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "v1"}),
				func(m map[string]any) {
					m["prev_events"] = []any{[]any{good.ID, map[string]string{"sha256": "abc"}}}
					m["event_id"] = "$x:" + evil.name
				})},
			{"float in content", json.RawMessage(strings.Replace(string(evil.build(t, roomID, good, msgAuth, "m.room.message", nil,
				map[string]any{"msgtype": "m.text", "body": "f", "n": 1}).JSON()), `"n":1`, `"n":1.0`, 1))},
		}
		for _, b := range bad {
			if errText := evil.send(t, victim, b.raw); errText == "" {
				t.Errorf("%s: accepted", b.name)
			}
		}

		// A bad content hash: the event is kept, redacted.
		tampered := evil.build(t, roomID, good, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "original"})
		raw := mutate(t, tampered, func(m map[string]any) { m["content"].(map[string]any)["body"] = "tampered" })
		evil.send(t, victim, raw)
		if got, err := alice.GetEvent(ctx, roomID, tampered.ID); err == nil && got.Content.Raw["body"] != nil {
			t.Errorf("an event with a bad content hash is shown with body %v", got.Content.Raw["body"])
		}

		// The room is unharmed: power levels are as before, only the valid
		// messages are visible, and mallory can still talk.
		plAfter := map[string]any{}
		if err := alice.StateEvent(ctx, roomID, event.StatePowerLevels, "", &plAfter); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(plAfter) != fmt.Sprint(plBefore) {
			t.Errorf("power levels changed: %v → %v", plBefore, plAfter)
		}
		after := evil.build(t, roomID, good, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "still here"})
		if errText := evil.send(t, victim, after.JSON()); errText != "" {
			t.Fatalf("a valid event after the attack was refused: %s", errText)
		}
		got, err := messagesIn(ctx, alice, roomID)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, "|") != "hello|still here" {
			t.Errorf("alice sees %q, want hello and still here", got)
		}

		// A gap: the victim gets an event whose parent it never saw, and
		// fetches the parent from the sender with /get_missing_events.
		parent := evil.build(t, roomID, after, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "parent"})
		child := evil.build(t, roomID, parent, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "child"})
		evil.missing.Store(&[]json.RawMessage{parent.JSON()})
		if errText := evil.send(t, victim, child.JSON()); errText != "" {
			t.Fatalf("an event after a gap was refused: %s", errText)
		}
		got, err = messagesIn(ctx, alice, roomID)
		if err != nil || strings.Join(got, "|") != "hello|still here|parent|child" {
			t.Errorf("after the gap alice sees %q (%v), want the parent fetched before the child", got, err)
		}
		after = child

		// A server ACL shuts the server out. ACLs match the host without the
		// port, so this denies every server on 127.0.0.1 but alice's own.
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateServerACL, "", map[string]any{
			"allow": []string{"*"}, "deny": []string{"127.0.0.*"}, "allow_ip_literals": true,
		}); err != nil {
			t.Fatal(err)
		}
		denied := evil.build(t, roomID, after, msgAuth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "denied"})
		if errText := evil.send(t, victim, denied.JSON()); errText == "" {
			t.Error("a server denied by the ACL could still send")
		}
	})
}

// TestSendJoinOmitMembers: a resident server answers send_join with
// omit_members=true with a partial state: no member events beyond the
// heroes, members_omitted set, and the servers in the room listed.
func TestSendJoinOmitMembers(t *testing.T) {
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 1)
	victim := hs[0].Config.ServerName
	alice := hs[0].Client("alice")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "named"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		c := hs[0].Client(fmt.Sprintf("member%d-", i))
		if _, err := c.JoinRoomByID(ctx, created.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	evil := startEvil(t, hs[0].TestCA)
	user := id.UserID("@mallory:" + evil.name)
	var tmpl struct {
		RoomVersion id.RoomVersion  `json:"room_version"`
		Event       json.RawMessage `json:"event"`
	}
	path := "/_matrix/federation/v1/make_join/" + url.PathEscape(created.RoomID.String()) + "/" + url.PathEscape(user.String())
	if err := evil.client.Do(ctx, victim, "GET", path, url.Values{"ver": {"12"}}, nil, &tmpl); err != nil {
		t.Fatal(err)
	}
	join, err := pdu.FromTemplate(tmpl.RoomVersion, tmpl.Event, json.RawMessage(`{"membership":"join"}`), time.Now().UnixMilli(), evil.name, evil.key.ID, evil.key.Priv)
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		State          []json.RawMessage `json:"state"`
		MembersOmitted bool              `json:"members_omitted"`
		ServersInRoom  []string          `json:"servers_in_room"`
	}
	path = "/_matrix/federation/v2/send_join/" + url.PathEscape(created.RoomID.String()) + "/" + url.PathEscape(join.ID.String())
	if err := evil.client.Do(ctx, victim, "PUT", path, url.Values{"omit_members": {"true"}}, json.RawMessage(join.JSON()), &resp); err != nil {
		t.Fatal(err)
	}
	members := 0
	for _, raw := range resp.State {
		if ev, err := pdu.Parse(tmpl.RoomVersion, raw); err == nil && ev.Type == "m.room.member" {
			members++
		}
	}
	if !resp.MembersOmitted || members != 0 || !slices.Contains(resp.ServersInRoom, victim) {
		t.Fatalf("omit_members answer: omitted=%v, %d member events (want 0: the room has a name), servers %v",
			resp.MembersOmitted, members, resp.ServersInRoom)
	}
}
