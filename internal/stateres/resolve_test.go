package stateres

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

func TestPartition(t *testing.T) {
	a, b, c := stateKey("a", ""), stateKey("b", ""), stateKey("c", "")
	tests := []struct {
		name             string
		sets             []StateMap
		wantUnconflicted StateMap
		wantConflicted   map[string][]id.EventID // by type
	}{
		{
			name:             "identical",
			sets:             []StateMap{{a: "$1", b: "$2"}, {a: "$1", b: "$2"}},
			wantUnconflicted: StateMap{a: "$1", b: "$2"},
			wantConflicted:   map[string][]id.EventID{},
		},
		{
			name:             "different value",
			sets:             []StateMap{{a: "$1", b: "$2"}, {a: "$1", b: "$3"}},
			wantUnconflicted: StateMap{a: "$1"},
			wantConflicted:   map[string][]id.EventID{"b": {"$2", "$3"}},
		},
		{
			name:             "key missing from the first set",
			sets:             []StateMap{{a: "$1"}, {a: "$1", c: "$4"}},
			wantUnconflicted: StateMap{a: "$1"},
			wantConflicted:   map[string][]id.EventID{"c": {"$4"}},
		},
		{
			name:             "key missing from a later set",
			sets:             []StateMap{{a: "$1", c: "$4"}, {a: "$1"}, {a: "$1", c: "$4"}},
			wantUnconflicted: StateMap{a: "$1"},
			wantConflicted:   map[string][]id.EventID{"c": {"$4"}},
		},
		{
			name:             "three sets, values deduplicated",
			sets:             []StateMap{{b: "$2"}, {b: "$3"}, {b: "$2"}},
			wantUnconflicted: StateMap{},
			wantConflicted:   map[string][]id.EventID{"b": {"$2", "$3"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, c := partition(tc.sets)
			if !maps.Equal(u, tc.wantUnconflicted) {
				t.Errorf("unconflicted = %v, want %v", u, tc.wantUnconflicted)
			}
			got := map[string][]id.EventID{}
			for k, vals := range c {
				got[k.Type] = vals
			}
			if !maps.EqualFunc(got, tc.wantConflicted, slices.Equal) {
				t.Errorf("conflicted = %v, want %v", got, tc.wantConflicted)
			}
		})
	}
}

func TestResolveTrivialInputs(t *testing.T) {
	a := stateKey("a", "")
	f := &mapFetcher{evs: nil, asked: map[id.EventID]int{}}
	tests := []struct {
		name string
		sets []StateMap
		want StateMap
	}{
		{"no sets", nil, StateMap{}},
		{"one set", []StateMap{{a: "$1"}}, StateMap{a: "$1"}},
		{"one nil set", []StateMap{nil}, StateMap{}},
		{"no conflict", []StateMap{{a: "$1"}, {a: "$1"}}, StateMap{a: "$1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(context.Background(), id.RoomV11, tc.sets, f)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) || got == nil {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if f.calls != 0 {
		t.Errorf("fetcher called %d times without a conflict", f.calls)
	}
	if _, err := Resolve(context.Background(), "nonsense", []StateMap{{a: "$1"}, {a: "$2"}}, f); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("unknown version: err = %v, want ErrUnknownVersion", err)
	}
}

// TestResolveLoadsOnlyWhatItNeeds checks that a conflict between two topics
// loads the conflicted events and the few state entries their auth checks
// read, not the rest of the unconflicted state.
func TestResolveLoadsOnlyWhatItNeeds(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV1, id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			b := newBuilder(t, v)
			s, last := b.chain(nil, "", initialEvents[:7]...)
			s1, _ := b.chain(s, last, topic("TA", alice))
			s2, _ := b.chain(s, last, topic("TB", alice))
			f := newFetcher(b)
			got, err := Resolve(context.Background(), v, []StateMap{s1, s2}, f)
			if err != nil {
				t.Fatal(err)
			}
			if got[stateKey("m.room.topic", "")] == "" {
				t.Errorf("no topic resolved: %s", b.named(got))
			}
			for _, n := range []string{"IMB", "IMC", "IMZ", "IJR"} {
				if f.asked[b.id(n)] > 0 {
					t.Errorf("unconflicted event %s was loaded", n)
				}
			}
		})
	}
}

// TestResolveMissingEvents checks that conflicted events the Fetcher cannot
// find are left out rather than failing the resolution.
func TestResolveMissingEvents(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV1, id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			b := newBuilder(t, v)
			s, last := b.chain(nil, "", initialEvents[:7]...)
			s1, _ := b.chain(s, last, topic("TA", alice))
			s2, _ := b.chain(s, last, topic("TB", alice))
			s3 := maps.Clone(s)
			s3[stateKey("m.room.topic", "")] = "$gone"
			got, err := Resolve(context.Background(), v, []StateMap{s1, s2, s3}, newFetcher(b))
			if err != nil {
				t.Fatal(err)
			}
			if x := got[stateKey("m.room.topic", "")]; x != b.id("TA") && x != b.id("TB") {
				t.Errorf("topic = %q, want TA or TB", x)
			}
		})
	}
}

// TestResolveRejectedAuthEvent checks that an auth event marked rejected is
// not used: in MSC4297's problem A under v2.1 the join rules are authorised
// by Alice's join from their own auth events; if that join was rejected,
// neither join rules event passes.
func TestResolveRejectedAuthEvent(t *testing.T) {
	for _, rejected := range []bool{false, true} {
		b := newBuilder(t, id.RoomV12)
		s, _ := b.chain(nil, "",
			initialEvents[0], initialEvents[1], initialEvents[2],
			joinRules("JR1", alice, "public"),
			joinRules("JR2", alice, "invite"),
			member("LA", alice, alice, "leave"),
		)
		stale := maps.Clone(s)
		stale[joinRulesKey] = b.id("JR1")
		b.evs[b.id("IMA")].InternalMeta.Rejected = rejected
		got, err := Resolve(context.Background(), id.RoomV12, []StateMap{s, stale}, newFetcher(b))
		if err != nil {
			t.Fatal(err)
		}
		want := b.id("JR2")
		if rejected {
			want = ""
		}
		if got[joinRulesKey] != want {
			t.Errorf("alice's join rejected=%v: join rules = %q, want %q", rejected, got[joinRulesKey], want)
		}
	}
}

// TestResolveRestrictedJoin checks that a restricted join, whose auth check
// verifies the authorising server's signature, is allowed without signing
// keys: the test event carries no signature at all.
func TestResolveRestrictedJoin(t *testing.T) {
	const dave = id.UserID("@dave:other")
	for _, v := range []id.RoomVersion{id.RoomV8, id.RoomV10, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			b := newBuilder(t, v)
			s, last := b.chain(nil, "",
				initialEvents[0], initialEvents[1], initialEvents[2],
				ev{"JR", alice, typeJoinRules, sk(""), `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!other:test"}]}`},
			)
			joined, _ := b.chain(s, last, ev{"JD", dave, typeMember, sk(dave.String()),
				`{"membership":"join","join_authorised_via_users_server":"@alice:test"}`})
			if b.evs[b.id("JD")].Signatures != nil {
				t.Fatal("test event unexpectedly signed")
			}
			got, err := Resolve(context.Background(), v, []StateMap{s, joined}, newFetcher(b))
			if err != nil {
				t.Fatal(err)
			}
			if got[stateKey(typeMember, dave.String())] != b.id("JD") {
				t.Errorf("restricted join not resolved in: %s", b.named(got))
			}
		})
	}
}

// TestResolveNeedsEventIDsFromMeta checks that versions 1 and 2 refuse to
// resolve a conflict when eventauth could not read their event IDs.
func TestResolveNeedsEventIDsFromMeta(t *testing.T) {
	mpdu.UseInternalMetaForGetEventID = false
	t.Cleanup(func() { mpdu.UseInternalMetaForGetEventID = true })
	a := stateKey("a", "")
	sets := []StateMap{{a: "$1"}, {a: "$2"}}
	for _, tc := range []struct {
		v    id.RoomVersion
		want error
	}{{id.RoomV1, ErrEventIDsNotFromMeta}, {id.RoomV2, ErrEventIDsNotFromMeta}, {id.RoomV3, nil}} {
		_, err := Resolve(context.Background(), tc.v, sets, newFetcher(newBuilder(t, tc.v)))
		if !errors.Is(err, tc.want) {
			t.Errorf("v%s: err = %v, want %v", tc.v, err, tc.want)
		}
	}
}
