package stateres

import (
	"container/heap"
	"math"
	"slices"

	"maunium.net/go/mautrix/id"
)

// powerSort orders xs by the reverse topological power ordering: Kahn's
// algorithm over the auth_events edges between events of xs, taking at each
// step the candidate whose sender has the greatest power level, then the
// smallest origin_server_ts, then the smallest event ID. Earliest first.
//
// Every event of xs must be loaded. Events caught in an auth_events cycle
// (possible only with forged room v1/v2 event IDs) are left out.
func (r *resolver) powerSort(xs set) ([]id.EventID, error) {
	var authIDs []id.EventID
	for x := range xs {
		authIDs = append(authIDs, r.evs[x].AuthEvents...)
	}
	if err := r.load(authIDs); err != nil {
		return nil, err
	}
	// pending counts the auth events of x in xs not yet emitted; dependents
	// lists, for each event, the events of xs citing it.
	pending := make(map[id.EventID]int, len(xs))
	dependents := make(map[id.EventID][]id.EventID, len(xs))
	h := &powerHeap{}
	for x := range xs {
		n := 0
		for i, a := range r.evs[x].AuthEvents {
			if _, ok := xs[a]; !ok || slices.Contains(r.evs[x].AuthEvents[:i], a) {
				continue
			}
			n++
			dependents[a] = append(dependents[a], x)
		}
		pending[x] = n
		if n == 0 {
			h.items = append(h.items, r.powerItem(x))
		}
	}
	heap.Init(h)
	out := make([]id.EventID, 0, len(xs))
	for h.Len() > 0 {
		it := heap.Pop(h).(powerItem)
		out = append(out, it.id)
		for _, d := range dependents[it.id] {
			pending[d]--
			if pending[d] == 0 {
				heap.Push(h, r.powerItem(d))
			}
		}
	}
	return out, nil
}

type powerItem struct {
	power int64
	ts    int64
	id    id.EventID
}

func (r *resolver) powerItem(x id.EventID) powerItem {
	e := r.evs[x]
	return powerItem{power: r.senderPower(e), ts: e.OriginServerTS, id: x}
}

// powerHeap is a min-heap under the power ordering's comparison.
type powerHeap struct{ items []powerItem }

func (h *powerHeap) Len() int { return len(h.items) }
func (h *powerHeap) Less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	if a.power != b.power {
		return a.power > b.power
	}
	if a.ts != b.ts {
		return a.ts < b.ts
	}
	return a.id < b.id
}
func (h *powerHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *powerHeap) Push(x any)    { h.items = append(h.items, x.(powerItem)) }
func (h *powerHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}

// noPosition is the mainline position of an event whose power levels chain
// never meets the mainline: greater than any index.
const noPosition = math.MaxInt

// mainlineSort orders ids by the mainline ordering based on the power levels
// event pl ("" for none): greater mainline position first, then smaller
// origin_server_ts, then smaller event ID. Every event of ids must be
// loaded.
func (r *resolver) mainlineSort(ids []id.EventID, pl id.EventID) ([]id.EventID, error) {
	// The mainline of pl: index 0 is pl itself.
	mainline := map[id.EventID]int{}
	for i, p := 0, pl; p != ""; i++ {
		if _, seen := mainline[p]; seen {
			break
		}
		if err := r.load([]id.EventID{p}); err != nil {
			return nil, err
		}
		e := r.evs[p]
		if e == nil {
			break
		}
		mainline[p] = i
		if err := r.load(e.AuthEvents); err != nil {
			return nil, err
		}
		p = r.powerLevelsAuthEvent(e)
	}

	// Events citing the same power levels event share its position, so walk
	// once per distinct cited event, all walks in step so that each step
	// loads what every walk needs in one call. memo holds, for each power
	// levels event passed, the position of the first mainline event in
	// [q, q1, q2, ...].
	var authIDs []id.EventID
	for _, x := range ids {
		authIDs = append(authIDs, r.evs[x].AuthEvents...)
	}
	if err := r.load(authIDs); err != nil {
		return nil, err
	}
	type walk struct {
		at   id.EventID
		path []id.EventID
		seen set
	}
	memo := map[id.EventID]int{"": noPosition}
	walks := map[id.EventID]*walk{}
	for _, x := range ids {
		s := r.powerLevelsAuthEvent(r.evs[x])
		if _, ok := walks[s]; !ok && s != "" {
			walks[s] = &walk{at: s, seen: set{}}
		}
	}
	for len(walks) > 0 {
		var need []id.EventID
		for _, w := range walks {
			need = append(need, w.at)
		}
		if err := r.load(need); err != nil {
			return nil, err
		}
		need = need[:0]
		for s, w := range walks {
			q := w.at
			p, done := mainline[q]
			if !done {
				p, done = memo[q]
			}
			if _, cycle := w.seen[q]; !done && (r.evs[q] == nil || cycle) {
				p, done = noPosition, true
			}
			if done {
				for _, passed := range w.path {
					memo[passed] = p
				}
				if _, on := mainline[q]; !on {
					memo[q] = p
				}
				delete(walks, s)
				continue
			}
			w.path = append(w.path, q)
			w.seen[q] = struct{}{}
			need = append(need, r.evs[q].AuthEvents...)
		}
		if err := r.load(need); err != nil {
			return nil, err
		}
		for _, w := range walks {
			w.at = r.powerLevelsAuthEvent(r.evs[w.at])
		}
	}
	pos := make(map[id.EventID]int, len(ids))
	for _, x := range ids {
		s := r.powerLevelsAuthEvent(r.evs[x])
		if p, ok := mainline[s]; ok {
			pos[x] = p
		} else if p, ok := memo[s]; ok {
			pos[x] = p
		} else {
			pos[x] = noPosition
		}
	}

	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b id.EventID) int {
		if pa, pb := pos[a], pos[b]; pa != pb {
			if pa > pb {
				return -1
			}
			return 1
		}
		ea, eb := r.evs[a], r.evs[b]
		if ea.OriginServerTS != eb.OriginServerTS {
			if ea.OriginServerTS < eb.OriginServerTS {
				return -1
			}
			return 1
		}
		if a < b {
			return -1
		}
		if a > b {
			return 1
		}
		return 0
	})
	return out, nil
}
