package stateres

import (
	"maps"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestResolveV1(t *testing.T) {
	classic := map[string]dagCase{}
	for _, tc := range classicCases {
		classic[tc.name] = tc
	}
	tests := []struct {
		dagCase
		wantV2 []string // nil: not checked here (see TestResolveClassicCases)
	}{
		// The classic v2 cases under v1, whose flaws they were written to
		// show. Power levels are adopted by ascending depth while allowed,
		// so Bob's concurrent power levels lose; but members are checked
		// against R without the conflicted members, so Alice, whose own
		// membership is conflicted, cannot ban Bob: the ban is lost.
		{dagCase: withWant(classic["ban vs power levels"], "PA", "MA")},
		// A member key with one event takes it unchecked: Evelyn's join
		// survives the private join rule.
		{dagCase: withWant(classic["join rule evasion"], "JR", "ME")},
		// Charlie's power levels are checked against Alice's (depth
		// order), where Charlie has no power: the chain is cut.
		{dagCase: withWant(classic["offtopic power levels"], "PA")},
		{dagCase: withWant(classic["topic basic"], "PA2", "T2")},
		{dagCase: withWant(classic["topic reset"], "T1", "MB", "PA")},
		{dagCase: withWant(classic["topic"], "T4", "PA2")},
		{dagCase: withWant(classic["mainline sort"], "T3", "PA2")},
		{
			// Two allowed topics at the same depth: v1 takes the smaller
			// sha1(event_id) (sha1("$TZ") < sha1("$TY")), v2 the later
			// origin_server_ts (TY).
			dagCase: dagCase{
				name:  "same depth topics",
				evs:   []ev{topic("TZ", alice), topic("TY", alice)},
				edges: [][]string{{"END", "TZ", "START"}, {"END", "TY", "START"}},
				want:  []string{"TZ"},
			},
			wantV2: []string{"TY"},
		},
		{
			// Charlie may not set the topic. v1 falls back to the topic of
			// smallest depth when none passes; v2 keeps none.
			dagCase: dagCase{
				name: "no topic passes",
				evs: []ev{
					topic("TC1", charlie),
					message("M1", zara),
					topic("TC2", charlie),
				},
				edges: [][]string{{"END", "TC1", "START"}, {"END", "TC2", "M1", "START"}},
				want:  []string{"TC1"},
			},
			wantV2: []string{},
		},
		{
			// The deeper topic is not allowed, the shallower one is.
			dagCase: dagCase{
				name: "deeper topic not allowed",
				evs: []ev{
					topic("TA", alice),
					message("M1", zara),
					topic("TC", charlie),
				},
				edges: [][]string{{"END", "TA", "START"}, {"END", "TC", "M1", "START"}},
				want:  []string{"TA"},
			},
			wantV2: []string{"TA"},
		},
	}
	for _, tc := range tests {
		for _, v := range []id.RoomVersion{id.RoomV1, id.RoomV2} {
			want := tc.want
			if v != id.RoomV1 {
				if tc.wantV2 == nil {
					continue
				}
				want = tc.wantV2
			}
			for _, fe := range fetchers {
				t.Run(tc.name+"/v"+string(v)+"/"+fe.name, func(t *testing.T) {
					b := newBuilder(t, v)
					got, start := b.dag(fe.make(b), tc.evs, tc.edges)
					wantState := maps.Clone(start)
					for _, n := range want {
						x := b.evs[b.id(n)]
						wantState[x.Key()] = x.ID
					}
					if !maps.Equal(got, wantState) {
						t.Errorf("resolved state\n got: %s\nwant: %s", b.named(got), b.named(wantState))
					}
				})
			}
		}
	}
}

func withWant(tc dagCase, want ...string) dagCase {
	tc.want = want
	return tc
}
