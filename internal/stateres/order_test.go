package stateres

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/myelin-chat/myelin/internal/pdu"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// raw adds an event with explicit auth events to b, for tests of the
// orderings that need DAG shapes a room would not produce by itself.
func (b *builder) raw(name string, sender id.UserID, typ, content string, ts int64, auth ...string) *pdu.Event {
	return b.rawKey(name, sender, typ, "", content, ts, auth...)
}

// rawKey is raw with a state key.
func (b *builder) rawKey(name string, sender id.UserID, typ, key, content string, ts int64, auth ...string) *pdu.Event {
	p := &mpdu.PDU{
		Type: typ, StateKey: &key, Sender: sender, Content: []byte(content),
		OriginServerTS: ts, RoomID: b.roomID, PrevEvents: []id.EventID{},
	}
	for _, a := range auth {
		p.AuthEvents = append(p.AuthEvents, b.id(a))
	}
	e := &pdu.Event{PDU: p, ID: b.id(name), Version: b.v}
	b.evs[e.ID] = e
	b.names[e.ID] = name
	return e
}

func (b *builder) resolver() *resolver {
	r := newResolver(context.Background(), b.v, newFetcher(b))
	var all []id.EventID
	for x := range b.evs {
		all = append(all, x)
	}
	if err := r.load(all); err != nil {
		b.t.Fatal(err)
	}
	return r
}

func (b *builder) ids(names ...string) []id.EventID {
	out := make([]id.EventID, len(names))
	for i, n := range names {
		out[i] = b.id(n)
	}
	return out
}

func (b *builder) set(names ...string) set {
	out := set{}
	for _, x := range b.ids(names...) {
		out[x] = struct{}{}
	}
	return out
}

func TestPowerSort(t *testing.T) {
	b := newBuilder(t, id.RoomV11)
	b.raw("CREATE", alice, typeCreate, `{}`, 1)
	b.raw("PL", alice, typePowerLevels, `{"users":{"@alice:test":100,"@bob:test":50,"@charlie:test":"75"}}`, 2, "CREATE")
	// Every event below cites CREATE and PL, outside the sorted set.
	b.raw("C1", charlie, "x", `{}`, 10, "CREATE", "PL") // 75, from a string
	b.raw("B1", bob, "x", `{}`, 1, "CREATE", "PL")      // 50
	b.raw("A2", alice, "x", `{}`, 9, "CREATE", "PL")    // 100, same ts as A1
	b.raw("A1", alice, "x", `{}`, 9, "CREATE", "PL")
	b.raw("Z1", zara, "x", `{}`, 0, "CREATE", "PL") // 0
	// D is sent by alice but cites Z1, so it must come after Z1.
	b.raw("D", alice, "x", `{}`, 0, "CREATE", "PL", "Z1")
	// N has no power levels among its auth events: the creator has 100.
	b.raw("N", alice, "x", `{}`, 20, "CREATE")
	r := b.resolver()
	got, err := r.powerSort(b.set("C1", "B1", "A2", "A1", "Z1", "D", "N"))
	if err != nil {
		t.Fatal(err)
	}
	want := b.ids("A1", "A2", "N", "C1", "B1", "Z1", "D")
	if !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

// TestPowerSortTies checks Kahn's algorithm alone: equal power and
// timestamps leave the event IDs to break ties.
func TestPowerSortTies(t *testing.T) {
	b := newBuilder(t, id.RoomV11)
	b.raw("o", alice, "x", `{}`, 1)
	b.raw("l", alice, "x", `{}`, 1, "o")
	b.raw("n", alice, "x", `{}`, 1, "o")
	b.raw("m", alice, "x", `{}`, 1, "n", "o")
	b.raw("p", alice, "x", `{}`, 1, "o")
	got, err := b.resolver().powerSort(b.set("l", "m", "n", "o", "p"))
	if err != nil {
		t.Fatal(err)
	}
	if want := b.ids("o", "l", "n", "m", "p"); !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestMainlineSort(t *testing.T) {
	b := newBuilder(t, id.RoomV11)
	b.raw("CREATE", alice, typeCreate, `{}`, 1)
	b.raw("P1", alice, typePowerLevels, `{}`, 2, "CREATE")
	b.raw("P2", alice, typePowerLevels, `{}`, 3, "CREATE", "P1")
	b.raw("P3", alice, typePowerLevels, `{}`, 4, "CREATE", "P2")
	b.raw("Q", alice, typePowerLevels, `{}`, 5, "CREATE", "P1") // off the mainline
	b.raw("Q2", alice, typePowerLevels, `{}`, 6, "CREATE", "Q")
	// Timestamps run against the mainline order to show it comes first.
	b.raw("E1", alice, "x", `{}`, 1, "CREATE", "P3") // position 0
	b.raw("E2", alice, "x", `{}`, 2, "CREATE", "P2") // position 1
	b.raw("E3", alice, "x", `{}`, 3, "CREATE", "Q2") // Q2 → Q → P1: position 2
	b.raw("E4", alice, "x", `{}`, 5, "CREATE")       // no power levels: ∞
	b.raw("E5", alice, "x", `{}`, 4, "CREATE", "Q")  // Q → P1: position 2
	b.raw("E6", alice, "x", `{}`, 3, "CREATE", "P1") // position 2, same ts as E3: by ID
	r := b.resolver()
	tests := []struct {
		name string
		pl   string
		want []string
	}{
		{"based on P3", "P3", []string{"E4", "E3", "E6", "E5", "E2", "E1"}},
		// Q2's mainline is Q2, Q, P1: the P chain meets it at P1, position 2.
		{"based on Q2", "Q2", []string{"E4", "E1", "E2", "E6", "E5", "E3"}},
		{"no power levels", "", []string{"E1", "E2", "E3", "E6", "E5", "E4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl := id.EventID("")
			if tc.pl != "" {
				pl = b.id(tc.pl)
			}
			got, err := r.mainlineSort(b.ids("E1", "E2", "E3", "E4", "E5", "E6"), pl)
			if err != nil {
				t.Fatal(err)
			}
			if want := b.ids(tc.want...); !slices.Equal(got, want) {
				t.Errorf("order = %v, want %v", got, want)
			}
		})
	}
}

func TestSubgraph(t *testing.T) {
	b := newBuilder(t, id.RoomV12)
	b.raw("A", alice, "x", `{}`, 1)
	b.raw("B", alice, "x", `{}`, 2, "A")
	b.raw("C", alice, "x", `{}`, 3, "B")
	b.raw("X", alice, "x", `{}`, 4)
	b.raw("D", alice, "x", `{}`, 5, "C", "X")
	b.raw("Y", alice, "x", `{}`, 6, "D") // above the conflicted events
	b.raw("E", alice, "x", `{}`, 7, "A")
	tests := []struct {
		name       string
		conflicted []string
		want       []string
	}{
		{"path between two", []string{"A", "D"}, []string{"A", "B", "C", "D"}},
		{"two paths", []string{"A", "D", "E"}, []string{"A", "B", "C", "D", "E"}},
		{"no path", []string{"X", "E"}, []string{"X", "E"}},
		{"one event", []string{"C"}, []string{"C"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := b.resolver()
			got, err := r.subgraph(b.ids(tc.conflicted...), b.set(tc.conflicted...))
			if err != nil {
				t.Fatal(err)
			}
			if want := b.set(tc.want...); !maps.Equal(got, want) {
				t.Errorf("subgraph = %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
		})
	}
}

func TestSenderPower(t *testing.T) {
	const dave = id.UserID("@dave:test")
	tests := []struct {
		v    id.RoomVersion
		want map[id.UserID]int64
	}{
		{id.RoomV10, map[id.UserID]int64{alice: 100, bob: 7, charlie: 50, zara: 7}},
		{id.RoomV11, map[id.UserID]int64{alice: 100, bob: 7, charlie: 50, zara: 7}},
		// Creators, including additional ones, have infinite power.
		{id.RoomV12, map[id.UserID]int64{alice: infinitePower, bob: infinitePower, charlie: 50, zara: 7}},
	}
	for _, tc := range tests {
		t.Run("v"+string(tc.v), func(t *testing.T) {
			b := newBuilder(t, tc.v)
			b.raw("CREATE", alice, typeCreate, `{"creator":"@alice:test","additional_creators":["@bob:test"]}`, 1)
			plContent := `{"users":{"@charlie:test":50},"users_default":7}`
			if !tc.v.PrivilegedRoomCreators() {
				plContent = `{"users":{"@alice:test":100,"@charlie:test":50},"users_default":7}`
			}
			b.raw("PL", alice, typePowerLevels, plContent, 2, "CREATE")
			r := b.resolver()
			if err := r.loadCreators(b.ids("PL")); err != nil {
				t.Fatal(err)
			}
			for u, want := range tc.want {
				e := b.raw("E"+u.Localpart(), u, "x", `{}`, 3, "CREATE", "PL")
				r.evs[e.ID] = e
				if got := r.senderPower(e); got != want {
					t.Errorf("power of %s = %d, want %d", u, got, want)
				}
			}
			// Without power levels, only the creator has power (100).
			for u, want := range map[id.UserID]int64{alice: 100, dave: 0} {
				if tc.v.PrivilegedRoomCreators() {
					continue
				}
				e := b.raw("N"+u.Localpart(), u, "x", `{}`, 3, "CREATE")
				r.evs[e.ID] = e
				if got := r.senderPower(e); got != want {
					t.Errorf("power of %s without power levels = %d, want %d", u, got, want)
				}
			}
		})
	}
}
