package stateres

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// forkRoom builds a room of 10,000 joined members and two concurrent
// branches: on one, Alice changes the power levels twice, sets the topic and
// kicks 50 members; on the other, Bob (a moderator) changes the power
// levels and the topic, kicks 50 other members, 100 new users join and 50
// members leave. It returns the two branches' states.
func forkRoom(tb testing.TB, v id.RoomVersion, members int) (*builder, []StateMap) {
	b := newBuilder(tb, v)
	s, last := b.chain(nil, "",
		initialEvents[0], initialEvents[1],
		powerLevels("PL0", alice, `{"users":{"@alice:test":100,"@bob:test":50}}`),
		initialEvents[3], initialEvents[4],
	)
	user := func(prefix string, i int) id.UserID { return id.UserID(fmt.Sprintf("@%s%d:test", prefix, i)) }
	var evs []ev
	for i := range members {
		u := user("u", i)
		evs = append(evs, member(fmt.Sprintf("J%d", i), u, u, "join"))
	}
	s, last = b.chain(s, last, evs...)

	evs = []ev{
		powerLevels("PLA1", alice, `{"users":{"@alice:test":100,"@bob:test":50,"@u0:test":10}}`),
		topic("TA", alice),
		powerLevels("PLA2", alice, `{"users":{"@alice:test":100,"@bob:test":50,"@u0:test":20}}`),
	}
	for i := range 50 {
		evs = append(evs, member(fmt.Sprintf("KA%d", i), alice, user("u", 1000+i), "leave"))
	}
	branchA, _ := b.chain(s, last, evs...)

	evs = []ev{
		powerLevels("PLB", bob, `{"users":{"@alice:test":100,"@bob:test":50},"events":{"m.room.topic":50}}`),
		topic("TB", bob),
	}
	for i := range 50 {
		evs = append(evs, member(fmt.Sprintf("KB%d", i), bob, user("u", 2000+i), "leave"))
	}
	for i := range 100 {
		u := user("n", i)
		evs = append(evs, member(fmt.Sprintf("N%d", i), u, u, "join"))
	}
	for i := range 50 {
		u := user("u", 3000+i)
		evs = append(evs, member(fmt.Sprintf("L%d", i), u, u, "leave"))
	}
	branchB, _ := b.chain(s, last, evs...)
	return b, []StateMap{branchA, branchB}
}

func BenchmarkResolveFork10k(b *testing.B) {
	for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		for _, fe := range fetchers {
			b.Run("v"+string(v)+"/"+fe.name, func(b *testing.B) {
				room, sets := forkRoom(b, v, 10_000)
				f := &mapFetcher{evs: room.evs}
				var fetcher Fetcher = f
				if fe.name == "authchainer" {
					fetcher = chainFetcher{f}
				}
				ctx := context.Background()
				b.ResetTimer()
				start := time.Now()
				for b.Loop() {
					if _, err := Resolve(ctx, v, sets, fetcher); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
			})
		}
	}
}

// BenchmarkResolveTopicFork10k resolves two concurrent topics in a room of
// 10,000 members: no event is in only some auth chains, so nothing of the
// unconflicted state is loaded beyond what the auth checks read.
func BenchmarkResolveTopicFork10k(b *testing.B) {
	for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		b.Run("v"+string(v), func(b *testing.B) {
			room, sets := forkRoom(b, v, 10_000)
			base, last := maps.Clone(sets[0]), id.EventID("")
			delete(base, stateKey("m.room.topic", ""))
			s1, _ := room.chain(base, last, topic("TX", alice))
			s2, _ := room.chain(base, last, topic("TY", alice))
			f := &mapFetcher{evs: room.evs}
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				if _, err := Resolve(context.Background(), v, []StateMap{s1, s2}, f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}

// TestResolveFork checks the outcome of the benchmark's fork, so that the
// benchmark measures a resolution that does the expected work.
func TestResolveFork(t *testing.T) {
	for _, v := range []id.RoomVersion{id.RoomV11, id.RoomV12} {
		t.Run("v"+string(v), func(t *testing.T) {
			b, sets := forkRoom(t, v, 4000)
			got, err := Resolve(context.Background(), v, sets, newFetcher(b))
			if err != nil {
				t.Fatal(err)
			}
			// Kahn's algorithm puts Alice's power levels (greater power)
			// before Bob's, which are allowed on top of them and so win;
			// the topics then follow the mainline of Bob's power levels,
			// on which TB (citing them) comes after TA (citing PLA1 → PL0).
			checks := []struct{ typ, key, want string }{
				{typePowerLevels, "", "PLB"},
				{"m.room.topic", "", "TB"},
				{typeMember, "@u1000:test", "KA0"},
				{typeMember, "@u2000:test", "KB0"},
				{typeMember, "@n5:test", "N5"},
				{typeMember, "@u3000:test", "L0"},
				{typeMember, "@u3999:test", "J3999"},
				{typeMember, "@alice:test", "IMA"},
			}
			for _, c := range checks {
				if x := got[stateKey(c.typ, c.key)]; x != b.id(c.want) {
					t.Errorf("%s/%s = %s, want %s", c.typ, c.key, b.names[x], c.want)
				}
			}
			if len(got) != len(sets[0])+100 {
				t.Errorf("resolved state has %d entries, want %d", len(got), len(sets[0])+100)
			}
		})
	}
}
