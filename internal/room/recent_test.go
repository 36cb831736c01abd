package room

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestRecentIndexCoverage(t *testing.T) {
	ri := newRecentIndex(100, 2)
	a, b, c := id.RoomID("!a:x"), id.RoomID("!b:x"), id.RoomID("!c:x")
	evID := func(p int64) id.EventID { return id.EventID(fmt.Sprintf("$%d", p)) }
	for p := int64(101); p <= 100+recentPerRoom+5; p++ {
		ri.add(a, p, evID(p))
	}
	ri.add(b, 200, evID(200))

	// Since before the floor: the index cannot answer.
	if _, ok := ri.latest([]id.RoomID{a}, 99, 300); ok {
		t.Error("answered for a position below the floor")
	}
	// Newest position up to upto, per room; rooms with nothing are left out.
	got, ok := ri.latest([]id.RoomID{a, b, c}, 120, 199)
	want := map[id.RoomID]int64{a: 100 + recentPerRoom + 5}
	if !ok || !maps.Equal(got, want) {
		t.Errorf("latest = %v, %v; want %v", got, ok, want)
	}
	// Room a dropped its oldest events: a range reaching below them goes to
	// the database, one above them is answered, newest first when asked.
	if _, ok := ri.timeline(a, Range{After: 101, Before: 1000, Limit: 10}); ok {
		t.Error("answered a timeline reaching below the room's floor")
	}
	ids, ok := ri.timeline(a, Range{After: 125, Before: 129, Backwards: true, Limit: 2})
	if !ok || !slices.Equal(ids, []id.EventID{evID(128), evID(127)}) {
		t.Errorf("timeline = %v, %v", ids, ok)
	}
	// A room never indexed had no events above the floor.
	if ids, ok := ri.timeline(c, Range{After: 150, Before: 1000, Limit: 10}); !ok || len(ids) != 0 {
		t.Errorf("timeline of an idle room = %v, %v", ids, ok)
	}
	// A third room evicts the least recently written one (a), whose events
	// are then not covered: the floor moves past them.
	ri.add(c, 300, evID(300))
	if _, ok := ri.latest([]id.RoomID{a}, 120, 400); ok {
		t.Error("answered for a range covering an evicted room's events")
	}
	if got, ok := ri.latest([]id.RoomID{a, b, c}, 200, 400); !ok || !maps.Equal(got, map[id.RoomID]int64{c: 300}) {
		t.Errorf("latest after eviction = %v, %v", got, ok)
	}
}
