package stateres

import (
	"context"
	"maps"
	"testing"

	"maunium.net/go/mautrix/id"
)

// dagCase is a room history in the style of the spec's and Synapse's state
// resolution examples: events after the initial ones, prev_events edges,
// and the events expected to win over the state at START.
type dagCase struct {
	name  string
	evs   []ev
	edges [][]string
	want  []string
}

// classicCases are the well-known state resolution v2 scenarios (the ones
// behind MSC1442 and Synapse's tests), rebuilt from their descriptions.
var classicCases = []dagCase{
	{
		// Alice bans Bob while Bob, concurrently, re-sends power levels:
		// the ban must win, and Bob's power levels (sent by a banned user
		// once ordered after the ban) must lose.
		name: "ban vs power levels",
		evs: []ev{
			powerLevels("PA", alice, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			member("MA", alice, alice, "join"),
			member("MB", alice, bob, "ban"),
			powerLevels("PB", bob, `{"users":{"@alice:test":100,"@bob:test":50}}`),
		},
		edges: [][]string{{"END", "MB", "MA", "PA", "START"}, {"END", "PB", "PA"}},
		want:  []string{"PA", "MA", "MB"},
	},
	{
		// Evelyn joins on a fork where the room is still public; the room
		// was made private concurrently, so her join must not survive.
		name: "join rule evasion",
		evs: []ev{
			joinRules("JR", alice, "private"),
			member("ME", evelyn, evelyn, "join"),
		},
		edges: [][]string{{"END", "JR", "START"}, {"END", "ME", "START"}},
		want:  []string{"JR"},
	},
	{
		// Power levels changed by users who were given power in turn: the
		// chain of legitimate changes wins over the older event.
		name: "offtopic power levels",
		evs: []ev{
			powerLevels("PA", alice, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			powerLevels("PB", bob, `{"users":{"@alice:test":100,"@bob:test":50,"@charlie:test":50}}`),
			powerLevels("PC", charlie, `{"users":{"@alice:test":100,"@bob:test":50,"@charlie:test":0}}`),
		},
		edges: [][]string{{"END", "PC", "PB", "PA", "START"}, {"END", "PA"}},
		want:  []string{"PC"},
	},
	{
		// Alice demotes Bob while Bob sets a topic on another fork: Bob's
		// topic, ordered after the demotion on the mainline, loses.
		name: "topic basic",
		evs: []ev{
			topic("T1", alice),
			powerLevels("PA1", alice, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			topic("T2", alice),
			powerLevels("PA2", alice, `{"users":{"@alice:test":100,"@bob:test":0}}`),
			powerLevels("PB", bob, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			topic("T3", bob),
		},
		edges: [][]string{{"END", "PA2", "T2", "PA1", "T1", "START"}, {"END", "T3", "PB", "PA1"}},
		want:  []string{"PA2", "T2"},
	},
	{
		// Bob sets a topic and is then banned; a fork that has seen only
		// the first topic merges in. Bob's topic loses to the ban and the
		// first topic comes back.
		name: "topic reset",
		evs: []ev{
			topic("T1", alice),
			powerLevels("PA", alice, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			topic("T2", bob),
			member("MB", alice, bob, "ban"),
		},
		edges: [][]string{{"END", "MB", "T2", "PA", "T1", "START"}, {"END", "T1"}},
		want:  []string{"T1", "MB", "PA"},
	},
	{
		// Like "topic basic", with a message event merging the forks
		// before Alice sets a new topic.
		name: "topic",
		evs: []ev{
			topic("T1", alice),
			powerLevels("PA1", alice, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			topic("T2", alice),
			powerLevels("PA2", alice, `{"users":{"@alice:test":100,"@bob:test":0}}`),
			powerLevels("PB", bob, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			topic("T3", bob),
			message("MZ1", zara),
			topic("T4", alice),
		},
		edges: [][]string{
			{"END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"},
			{"END", "MZ1", "T3", "PB", "PA1"},
		},
		want: []string{"T4", "PA2"},
	},
	{
		// Mainline ordering: T3 cites PA2, later on the mainline than PB,
		// which T4 cites, so T3 is applied last despite its earlier
		// timestamp.
		name: "mainline sort",
		evs: []ev{
			topic("T1", alice),
			powerLevels("PA1", alice, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			topic("T2", alice),
			powerLevels("PA2", alice, `{"users":{"@alice:test":100,"@bob:test":50},"events":{"m.room.power_levels":100}}`),
			powerLevels("PB", bob, `{"users":{"@alice:test":100,"@bob:test":50}}`),
			topic("T3", bob),
			topic("T4", alice),
		},
		edges: [][]string{{"END", "T3", "PA2", "T2", "PA1", "T1", "START"}, {"END", "T4", "PB", "PA1"}},
		want:  []string{"T3", "PA2"},
	},
}

// v2Versions are the room versions of state resolution v2, plus 12: the
// classic cases resolve the same under v2.1.
var v2Versions = []id.RoomVersion{id.RoomV2, id.RoomV3, id.RoomV6, id.RoomV9, id.RoomV10, id.RoomV11, id.RoomV12}

func TestResolveClassicCases(t *testing.T) {
	for _, tc := range classicCases {
		for _, v := range v2Versions {
			for _, fe := range fetchers {
				t.Run(tc.name+"/v"+string(v)+"/"+fe.name, func(t *testing.T) {
					b := newBuilder(t, v)
					got, start := b.dag(fe.make(b), tc.evs, tc.edges)
					want := maps.Clone(start)
					for _, n := range tc.want {
						x := b.evs[b.id(n)]
						want[x.Key()] = x.ID
					}
					if !maps.Equal(got, want) {
						t.Errorf("resolved state\n got: %s\nwant: %s", b.named(got), b.named(want))
					}
				})
			}
		}
	}
}

// TestResolveMSC4297 reproduces the two state resets MSC4297 describes, in
// which a state set from partial synchronisation holds an outdated event.
// State resolution v2 (room version 11) resets the state; v2.1 (room version
// 12) does not.
func TestResolveMSC4297(t *testing.T) {
	tests := []struct {
		name string
		// setup builds the room and returns the correct state set, the
		// outdated one, and which test event names the resolved state
		// holds for the keys the sets disagree on, under v2 and v2.1.
		setup func(b *builder) (good, stale StateMap)
		key   string // the contested key's type (state_key "")
		v2    string // "" for no event
		v21   string
	}{
		{
			// Problem A: Alice changes the join rules twice and leaves.
			// The stale set has the first join rules. Both forks agree
			// Alice left, so v2, starting from the unconflicted state,
			// rejects both join rules and the room has none.
			name: "problem A: join rules replayed against a later leave",
			setup: func(b *builder) (StateMap, StateMap) {
				s, _ := b.chain(nil, "",
					initialEvents[0], initialEvents[1], initialEvents[2],
					joinRules("JR1", alice, "public"),
					member("IMB", bob, bob, "join"),
					joinRules("JR2", alice, "invite"),
					member("LA", alice, alice, "leave"),
				)
				stale := maps.Clone(s)
				stale[joinRulesKey] = b.id("JR1")
				return s, stale
			},
			key: typeJoinRules,
			v2:  "",
			v21: "JR2",
		},
		{
			// Problem B: Alice promotes Bob, Bob promotes Charlie, Charlie
			// sets the topic and then changes the power levels. The stale
			// set has Alice's power levels. Charlie's topic (unconflicted)
			// cites Bob's power levels, so they are in every full auth
			// chain and not in the auth difference: v2 replays Charlie's
			// change against Alice's power levels and rejects it.
			name: "problem B: power levels chain missing from the auth difference",
			setup: func(b *builder) (StateMap, StateMap) {
				s, _ := b.chain(nil, "",
					initialEvents[0], initialEvents[1], initialEvents[2],
					member("IMB", bob, bob, "join"),
					member("IMC", charlie, charlie, "join"),
					powerLevels("PL1", alice, `{"users":{"@alice:test":100,"@bob:test":50}}`),
					powerLevels("PL2", bob, `{"users":{"@alice:test":100,"@bob:test":50,"@charlie:test":50}}`),
					topic("T", charlie),
					powerLevels("PL3", charlie, `{"users":{"@alice:test":100,"@bob:test":50,"@charlie:test":50},"events":{"m.room.topic":50}}`),
				)
				stale := maps.Clone(s)
				stale[powerLevelsKey] = b.id("PL1")
				return s, stale
			},
			key: typePowerLevels,
			v2:  "PL1",
			v21: "PL3",
		},
	}
	for _, tc := range tests {
		for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
			for _, fe := range fetchers {
				t.Run(tc.name+"/v"+string(v)+"/"+fe.name, func(t *testing.T) {
					b := newBuilder(t, v)
					good, stale := tc.setup(b)
					want := maps.Clone(good)
					k := stateKey(tc.key, "")
					wantName := tc.v2
					if v == id.RoomV12 {
						wantName = tc.v21
					}
					if wantName == "" {
						delete(want, k)
					} else {
						want[k] = b.id(wantName)
					}
					for _, order := range [][]StateMap{{good, stale}, {stale, good}} {
						got, err := Resolve(context.Background(), v, order, fe.make(b))
						if err != nil {
							t.Fatal(err)
						}
						if !maps.Equal(got, want) {
							t.Errorf("resolved state\n got: %s\nwant: %s", b.named(got), b.named(want))
						}
					}
				})
			}
		}
	}
}

// TestResolveConflictedSubgraphReplay is the conflicted subgraph scenario of
// Synapse's v2.1 tests: Evelyn renames herself citing the first power
// levels while her join (her rename's auth event) cited the third, and a
// state set after the rename holds the first power levels. v2.1 replays the
// power levels chain and both of Evelyn's events, ending with her join.
func TestResolveConflictedSubgraphReplay(t *testing.T) {
	b := newBuilder(t, id.RoomV12)
	join := `{"membership":"join"}`
	b.raw("CREATE", alice, typeCreate, `{"room_version":"12"}`, 1)
	b.rawKey("MA", alice, typeMember, alice.String(), join, 2)
	b.raw("PL1", alice, typePowerLevels, `{"users":{}}`, 3, "MA")
	b.raw("JR", alice, typeJoinRules, `{"join_rule":"public"}`, 4, "MA", "PL1")
	b.rawKey("MB", bob, typeMember, bob.String(), join, 5, "PL1", "JR")
	b.rawKey("MC", charlie, typeMember, charlie.String(), join, 6, "PL1", "JR")
	b.raw("PL2", alice, typePowerLevels, `{"users":{"@bob:test":50}}`, 7, "MA", "PL1")
	b.raw("PL3", bob, typePowerLevels, `{"users":{"@bob:test":50,"@charlie:test":50}}`, 8, "MB", "PL2")
	b.rawKey("ME1", evelyn, typeMember, evelyn.String(), join, 9, "PL3", "JR")
	b.rawKey("ME2", evelyn, typeMember, evelyn.String(), join, 10, "PL1", "JR", "ME1")
	b.rawKey("MZ", zara, typeMember, zara.String(), join, 11, "PL3", "JR")
	state := func(names ...string) StateMap {
		s := StateMap{}
		for _, n := range names {
			e := b.evs[b.id(n)]
			s[e.Key()] = e.ID
		}
		return s
	}
	dodgy := state("CREATE", "MA", "MB", "MC", "ME2", "PL1", "JR")
	sensible := state("CREATE", "MA", "MB", "MC", "MZ", "PL3", "JR")
	want := state("CREATE", "MA", "MB", "MC", "ME1", "MZ", "PL3", "JR")
	for _, fe := range fetchers {
		got, err := Resolve(context.Background(), id.RoomV12, []StateMap{dodgy, sensible}, fe.make(b))
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: resolved state\n got: %s\nwant: %s", fe.name, b.named(got), b.named(want))
		}
	}
}
