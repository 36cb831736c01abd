package stateres

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/myelin-chat/myelin/internal/pdu"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

func TestMain(m *testing.M) {
	// The test events carry made-up event IDs, and room versions 1 and 2
	// have no reference-hash IDs at all: eventauth must take an event's ID
	// from InternalMeta, as the server's pdu.Parse sets it.
	mpdu.UseInternalMetaForGetEventID = true
	os.Exit(m.Run())
}

const (
	alice   = id.UserID("@alice:test")
	bob     = id.UserID("@bob:test")
	charlie = id.UserID("@charlie:test")
	zara    = id.UserID("@zara:test")
	evelyn  = id.UserID("@evelyn:test")
)

// ev declares a test event. key nil makes a message event.
type ev struct {
	name    string
	sender  id.UserID
	typ     string
	key     *string
	content string
}

func sk(s string) *string { return &s }

var joinRulesKey = stateKey(typeJoinRules, "")

func stateKey(typ, key string) pdu.StateKey { return pdu.StateKey{Type: typ, StateKey: key} }

func member(name string, sender, target id.UserID, membership string) ev {
	return ev{name, sender, typeMember, sk(target.String()), fmt.Sprintf(`{"membership":%q}`, membership)}
}

func powerLevels(name string, sender id.UserID, content string) ev {
	return ev{name, sender, typePowerLevels, sk(""), content}
}

func topic(name string, sender id.UserID) ev {
	return ev{name, sender, "m.room.topic", sk(""), fmt.Sprintf(`{"topic":%q}`, name)}
}

func joinRules(name string, sender id.UserID, rule string) ev {
	return ev{name, sender, typeJoinRules, sk(""), fmt.Sprintf(`{"join_rule":%q}`, rule)}
}

func message(name string, sender id.UserID) ev {
	return ev{name, sender, "m.room.message", nil, `{"body":"hi"}`}
}

// builder makes the events of one test room. Events are built on a given
// state: their auth events are those the state holds for the auth events
// selection, as a server picks them.
type builder struct {
	t      testing.TB
	v      id.RoomVersion
	roomID id.RoomID
	evs    map[id.EventID]*pdu.Event
	names  map[id.EventID]string
	ts     map[string]int64
	nextTS int64
}

func newBuilder(t testing.TB, v id.RoomVersion) *builder {
	b := &builder{t: t, v: v, evs: map[id.EventID]*pdu.Event{}, names: map[id.EventID]string{}, ts: map[string]int64{}, nextTS: 1000}
	b.roomID = "!room:test"
	if v.RoomIDIsCreateEventID() {
		// The room ID is the create event's ID with the ! sigil.
		b.roomID = id.RoomID("!" + strings.Repeat("c", 43))
	}
	return b
}

// id returns the event ID for a test event name.
func (b *builder) id(name string) id.EventID {
	if name == "CREATE" && b.v.RoomIDIsCreateEventID() {
		return id.EventID("$" + b.roomID[1:])
	}
	return id.EventID("$" + name)
}

// declare fixes the origin_server_ts of events in the order given, before
// they are built in whatever order the DAG requires.
func (b *builder) declare(evs ...ev) {
	for _, e := range evs {
		if _, ok := b.ts[e.name]; !ok {
			b.ts[e.name] = b.nextTS
			b.nextTS++
		}
	}
}

// build makes event e with the given prev events on the state before it.
func (b *builder) build(e ev, prevs []id.EventID, before StateMap) *pdu.Event {
	b.t.Helper()
	b.declare(e)
	content := e.content
	if e.typ == typePowerLevels && b.v.PrivilegedRoomCreators() {
		content = withoutCreator(b.t, content)
	}
	if e.typ == typeCreate {
		// Real create events name their room version; eventauth reads it
		// to know whether creators have infinite power.
		content = fmt.Sprintf(`{"room_version":%q}`, b.v)
		if b.v.CreatorInContent() {
			content = fmt.Sprintf(`{"room_version":%q,"creator":%q}`, b.v, e.sender)
		}
	}
	p := &mpdu.PDU{
		Content:        []byte(content),
		OriginServerTS: b.ts[e.name],
		PrevEvents:     slices.Clone(prevs),
		Sender:         e.sender,
		StateKey:       e.key,
		Type:           e.typ,
		AuthEvents:     []id.EventID{},
	}
	if e.typ != typeCreate || !b.v.RoomIDIsCreateEventID() {
		p.RoomID = b.roomID
	}
	if p.PrevEvents == nil {
		p.PrevEvents = []id.EventID{}
	}
	var depth int64
	for _, pr := range prevs {
		depth = max(depth, b.evs[pr].Depth)
	}
	p.Depth = depth + 1
	for _, k := range p.AuthEventSelection(b.v) {
		if x, ok := before[k]; ok {
			p.AuthEvents = append(p.AuthEvents, x)
		}
	}
	evID := b.id(e.name)
	p.InternalMeta.EventID = evID
	out := &pdu.Event{PDU: p, ID: evID, Version: b.v}
	if _, dup := b.evs[evID]; dup {
		b.t.Fatalf("event %s built twice", e.name)
	}
	b.evs[evID] = out
	b.names[evID] = e.name
	return out
}

// withoutCreator drops alice, the creator, from the users of a power levels
// content: room version 12 rejects creators listed there.
func withoutCreator(t testing.TB, content string) string {
	var c map[string]any
	if err := json.Unmarshal([]byte(content), &c); err != nil {
		t.Fatalf("bad power levels content %s: %v", content, err)
	}
	if users, ok := c["users"].(map[string]any); ok {
		delete(users, alice.String())
	}
	out, _ := json.Marshal(c)
	return string(out)
}

// chain builds evs one after the other on state s after event prev and
// returns the state after the last one and its ID.
func (b *builder) chain(s StateMap, prev id.EventID, evs ...ev) (StateMap, id.EventID) {
	s = maps.Clone(s)
	if s == nil {
		s = StateMap{}
	}
	for _, e := range evs {
		var prevs []id.EventID
		if prev != "" {
			prevs = []id.EventID{prev}
		}
		x := b.build(e, prevs, s)
		if x.IsState() {
			s[x.Key()] = x.ID
		}
		prev = x.ID
	}
	return s, prev
}

// named renders a state map with test event names, for failure messages.
func (b *builder) named(s StateMap) string {
	var parts []string
	for k, x := range s {
		n := b.names[x]
		if n == "" {
			n = string(x)
		}
		parts = append(parts, fmt.Sprintf("%s/%s=%s", k.Type, k.StateKey, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// mapFetcher serves the builder's events and, if asked is not nil, counts
// what it is asked for.
type mapFetcher struct {
	evs   map[id.EventID]*pdu.Event
	calls int
	asked map[id.EventID]int
}

func newFetcher(b *builder) *mapFetcher {
	return &mapFetcher{evs: b.evs, asked: map[id.EventID]int{}}
}

func (f *mapFetcher) Events(_ context.Context, ids []id.EventID) ([]*pdu.Event, error) {
	f.calls++
	out := make([]*pdu.Event, 0, len(ids))
	for _, x := range ids {
		if f.asked != nil {
			f.asked[x]++
		}
		if e, ok := f.evs[x]; ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// chainFetcher adds an AuthChainer that walks the map, standing in for a
// store with an auth chain index.
type chainFetcher struct{ *mapFetcher }

func (f chainFetcher) AuthChain(_ context.Context, ids []id.EventID) (map[id.EventID]struct{}, error) {
	out := map[id.EventID]struct{}{}
	stack := slices.Clone(ids)
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		e := f.evs[x]
		if e == nil {
			continue
		}
		for _, a := range e.AuthEvents {
			if _, ok := out[a]; !ok {
				out[a] = struct{}{}
				stack = append(stack, a)
			}
		}
	}
	return out, nil
}

// fetchers are the two ways Resolve finds auth chains.
var fetchers = []struct {
	name string
	make func(b *builder) Fetcher
}{
	{"walk", func(b *builder) Fetcher { return newFetcher(b) }},
	{"authchainer", func(b *builder) Fetcher { return chainFetcher{newFetcher(b)} }},
}

// initialEvents start every DAG test room: alice creates it, sets power
// levels and a public join rule, and bob, charlie and zara join.
var initialEvents = []ev{
	{"CREATE", alice, typeCreate, sk(""), `{}`},
	member("IMA", alice, alice, "join"),
	powerLevels("IPOWER", alice, `{"users":{"@alice:test":100}}`),
	joinRules("IJR", alice, "public"),
	member("IMB", bob, bob, "join"),
	member("IMC", charlie, charlie, "join"),
	member("IMZ", zara, zara, "join"),
	message("START", zara),
	message("END", zara),
}

// dag builds the initial events and then evs, with prev_events given by
// edges: each edge lists events from newest to oldest, each one's prev
// being the next. The state before each event with several prev events is
// resolved with Resolve. It returns the state before END and the state
// after START.
func (b *builder) dag(f Fetcher, evs []ev, edges [][]string) (end, start StateMap) {
	b.t.Helper()
	byName := map[string]ev{}
	b.declare(initialEvents[:len(initialEvents)-2]...)
	b.declare(evs...)
	b.declare(initialEvents[len(initialEvents)-2:]...)
	for _, e := range append(slices.Clone(initialEvents), evs...) {
		byName[e.name] = e
	}
	prevs := map[string][]string{}
	addEdge := func(from, to string) {
		if !slices.Contains(prevs[from], to) {
			prevs[from] = append(prevs[from], to)
		}
	}
	var initial []string
	for _, e := range initialEvents[:len(initialEvents)-1] {
		initial = append(initial, e.name)
	}
	slices.Reverse(initial)
	for _, es := range append([][]string{initial}, edges...) {
		for i := 0; i+1 < len(es); i++ {
			addEdge(es[i], es[i+1])
		}
	}
	// Kahn's algorithm over prev edges, by name for a stable order.
	built := map[string]bool{}
	after := map[string]StateMap{}
	before := map[string]StateMap{}
	var names []string
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for len(built) < len(byName) {
		progress := false
		for _, n := range names {
			if built[n] {
				continue
			}
			ready := true
			for _, p := range prevs[n] {
				ready = ready && built[p]
			}
			if !ready {
				continue
			}
			var s StateMap
			var prevIDs []id.EventID
			var sets []StateMap
			for _, p := range prevs[n] {
				prevIDs = append(prevIDs, b.id(p))
				sets = append(sets, after[p])
			}
			switch len(sets) {
			case 0:
				s = StateMap{}
			case 1:
				s = maps.Clone(sets[0])
			default:
				var err error
				s, err = Resolve(context.Background(), b.v, sets, f)
				if err != nil {
					b.t.Fatalf("resolving state before %s: %v", n, err)
				}
			}
			before[n] = s
			x := b.build(byName[n], prevIDs, s)
			s = maps.Clone(s)
			if x.IsState() {
				s[x.Key()] = x.ID
			}
			after[n] = s
			built[n] = true
			progress = true
		}
		if !progress {
			b.t.Fatalf("DAG has a cycle or a missing event")
		}
	}
	return before["END"], after["START"]
}
