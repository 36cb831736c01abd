package room_test

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"maunium.net/go/mautrix/federation/eventauth"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
)

// authRoom is an in-memory room for authorization benchmarks: its events
// by ID and its current state.
type authRoom struct {
	version id.RoomVersion
	roomID  id.RoomID
	events  map[id.EventID]*mpdu.PDU
	state   map[pdu.StateKey]id.EventID
	last    id.EventID
	depth   int64
	key     ed25519.PrivateKey
}

// newAuthRoom builds a realistic public room: create, the creator's join,
// power levels naming admins and moderators, join rules, history
// visibility, name, topic, then members joined users.
func newAuthRoom(tb testing.TB, v id.RoomVersion, members int) *authRoom {
	tb.Helper()
	r := &authRoom{version: v, events: map[id.EventID]*mpdu.PDU{}, state: map[pdu.StateKey]id.EventID{},
		key: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))}
	creator := id.UserID("@creator:bench.example")
	createContent := map[string]any{"room_version": string(v)}
	if !v.RoomIDIsCreateEventID() {
		r.roomID = "!benchroom:bench.example"
		createContent["creator"] = creator
	}
	r.add(tb, r.proto(creator, "m.room.create", "", createContent))
	r.add(tb, r.proto(creator, "m.room.member", creator.String(), map[string]any{"membership": "join"}))
	users := map[string]int{}
	for i := range 20 {
		users[fmt.Sprintf("@mod%d:bench.example", i)] = 50
	}
	if !v.PrivilegedRoomCreators() {
		users[creator.String()] = 100
	}
	r.add(tb, r.proto(creator, "m.room.power_levels", "", map[string]any{
		"users": users, "users_default": 0, "events_default": 0, "state_default": 50,
		"ban": 50, "kick": 50, "redact": 50, "invite": 0,
		"events": map[string]int{"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100},
	}))
	r.add(tb, r.proto(creator, "m.room.join_rules", "", map[string]any{"join_rule": "public"}))
	r.add(tb, r.proto(creator, "m.room.history_visibility", "", map[string]any{"history_visibility": "shared"}))
	r.add(tb, r.proto(creator, "m.room.name", "", map[string]any{"name": "Benchmark room"}))
	r.add(tb, r.proto(creator, "m.room.topic", "", map[string]any{"topic": "A room for measuring authorization"}))
	for i := range 20 {
		u := id.UserID(fmt.Sprintf("@mod%d:bench.example", i))
		r.add(tb, r.proto(u, "m.room.member", u.String(), map[string]any{"membership": "join"}))
	}
	for i := range members {
		u := member(i)
		r.add(tb, r.proto(u, "m.room.member", u.String(), map[string]any{"membership": "join", "displayname": fmt.Sprintf("User %d", i)}))
	}
	return r
}

func member(i int) id.UserID { return id.UserID(fmt.Sprintf("@user%d:bench.example", i)) }

func (r *authRoom) proto(sender id.UserID, typ, stateKey string, content any) pdu.Proto {
	raw, _ := json.Marshal(content)
	p := pdu.Proto{Type: typ, Sender: sender, Content: raw, RoomID: r.roomID}
	if stateKey != "" || typ != "m.room.message" {
		sk := stateKey
		p.StateKey = &sk
	}
	return p
}

// build makes a signed event on top of the room with auth events chosen by
// the selection algorithm from the current state, and returns it with those
// auth events.
func (r *authRoom) build(tb testing.TB, p pdu.Proto) (*pdu.Event, []*mpdu.PDU) {
	tb.Helper()
	draft := &mpdu.PDU{Type: p.Type, StateKey: p.StateKey, Sender: p.Sender, Content: []byte(p.Content)}
	var authIDs []id.EventID
	var authEvents []*mpdu.PDU
	for _, k := range draft.AuthEventSelection(r.version) {
		if evID, ok := r.state[k]; ok {
			authIDs = append(authIDs, evID)
			authEvents = append(authEvents, r.events[evID])
		}
	}
	var prev []id.EventID
	if r.last != "" {
		prev = []id.EventID{r.last}
	}
	ev, err := pdu.Build(p, pdu.BuildArgs{Version: r.version, AuthEvents: authIDs, PrevEvents: prev, Depth: r.depth + 1,
		Timestamp: 1764096000000 + r.depth, ServerName: "bench.example", KeyID: "ed25519:bench", Key: r.key})
	if err != nil {
		tb.Fatal(err)
	}
	return ev, authEvents
}

// add builds, authorizes and applies an event.
func (r *authRoom) add(tb testing.TB, p pdu.Proto) {
	tb.Helper()
	ev, authEvents := r.build(tb, p)
	if err := eventauth.Authorize(r.version, ev.PDU, authEvents, r.getEvents, noKeys); err != nil {
		tb.Fatalf("building bench room: %s: %v", p.Type, err)
	}
	if r.roomID == "" {
		r.roomID = ev.RoomID()
	}
	r.events[ev.ID] = ev.PDU
	r.last, r.depth = ev.ID, ev.Depth
	if ev.IsState() {
		r.state[ev.Key()] = ev.ID
	}
}

func (r *authRoom) getEvents(ids []id.EventID) ([]*mpdu.PDU, error) {
	out := make([]*mpdu.PDU, 0, len(ids))
	for _, evID := range ids {
		if ev, ok := r.events[evID]; ok {
			out = append(out, ev)
		}
	}
	return out, nil
}

func noKeys(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error) {
	return "", time.Time{}, fmt.Errorf("no third-party invites in benchmarks")
}

// BenchmarkAuthorize measures eventauth.Authorize in a public room of 1,000
// members with 20 moderators, for the events the messaging load sends and
// for the membership and power changes a busy room sees. "precomputed"
// passes the auth events as room.Service does for local events; "received"
// lets Authorize load and check them through getEvents, as for a federated
// event.
func BenchmarkAuthorize(b *testing.B) {
	for _, v := range []id.RoomVersion{"10", "12"} {
		r := newAuthRoom(b, v, 1000)
		cases := []struct {
			name string
			p    pdu.Proto
		}{
			{"message", r.proto(member(7), "m.room.message", "", map[string]any{"msgtype": "m.text", "body": "hello"})},
			{"join", r.proto("@newcomer:bench.example", "m.room.member", "@newcomer:bench.example", map[string]any{"membership": "join"})},
			{"kick", r.proto("@mod3:bench.example", "m.room.member", member(9).String(), map[string]any{"membership": "leave"})},
			{"name", r.proto("@mod3:bench.example", "m.room.name", "", map[string]any{"name": "Renamed"})},
		}
		for _, c := range cases {
			ev, authEvents := r.build(b, c.p)
			b.Run(fmt.Sprintf("v%s/%s/precomputed", v, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := eventauth.Authorize(v, ev.PDU, authEvents, r.getEvents, noKeys); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("v%s/%s/received", v, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := eventauth.Authorize(v, ev.PDU, nil, r.getEvents, noKeys); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestAuthorizeAllocBudget keeps authorizing a message, done for every
// local send, within its allocation budget (about 1.5× the count measured
// with mautrix v0.32).
func TestAuthorizeAllocBudget(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not comparable under the race detector")
	}
	const budget = 80 // measured 52
	r := newAuthRoom(t, "12", 50)
	ev, authEvents := r.build(t, r.proto(member(7), "m.room.message", "", map[string]any{"msgtype": "m.text", "body": "hello"}))
	var err error
	got := testing.AllocsPerRun(50, func() {
		err = eventauth.Authorize("12", ev.PDU, authEvents, r.getEvents, noKeys)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got > budget {
		t.Errorf("authorizing a message: %v allocations, budget %d", got, budget)
	}
	t.Logf("authorizing a message: %v allocations (budget %d)", got, budget)
}

// raceEnabled reports whether the test binary was built with -race, whose
// instrumentation adds allocations of its own.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
