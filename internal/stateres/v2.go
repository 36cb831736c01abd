package stateres

import (
	"maps"

	"github.com/myelin-chat/myelin/internal/pdu"
	"maunium.net/go/mautrix/id"
)

var powerLevelsKey = pdu.StateKey{Type: typePowerLevels}

// resolveV2 is state resolution v2 (room versions 2-11) and v2.1 (room
// version 12), numbered as in the spec's algorithm.
func (r *resolver) resolveV2(sets []StateMap, unconflicted StateMap, conflicted map[pdu.StateKey][]id.EventID) (StateMap, error) {
	v21 := r.v.StateResVersion() == id.StateResV2_1
	conflictedIDs := set{}
	var conflictedList []id.EventID
	for _, vals := range conflicted {
		for _, x := range vals {
			if _, ok := conflictedIDs[x]; !ok {
				conflictedIDs[x] = struct{}{}
				conflictedList = append(conflictedList, x)
			}
		}
	}
	if err := r.load(conflictedList); err != nil {
		return nil, err
	}
	if r.v.PrivilegedRoomCreators() {
		if err := r.loadCreators(conflictedList); err != nil {
			return nil, err
		}
	}

	// Full conflicted set: the conflicted state set, the auth difference
	// and (v2.1) the conflicted state subgraph. Events that cannot be
	// loaded, or are not state events, take no part.
	full, err := r.authDifference(sets, unconflicted, conflicted, conflictedIDs)
	if err != nil {
		return nil, err
	}
	maps.Copy(full, conflictedIDs)
	if v21 {
		sub, err := r.subgraph(conflictedList, conflictedIDs)
		if err != nil {
			return nil, err
		}
		maps.Copy(full, sub)
	}
	var fullList []id.EventID
	for x := range full {
		fullList = append(fullList, x)
	}
	if err := r.load(fullList); err != nil {
		return nil, err
	}
	for x := range full {
		if e := r.evs[x]; e == nil || !e.IsState() {
			delete(full, x)
		}
	}

	// 1. The power events of the full conflicted set and the events of
	// their auth chains in the full conflicted set, by the reverse
	// topological power ordering.
	var powerIDs []id.EventID
	for x := range full {
		if isPowerEvent(r.evs[x]) {
			powerIDs = append(powerIDs, x)
		}
	}
	xs := r.closeWithin(powerIDs, full)
	sorted, err := r.powerSort(xs)
	if err != nil {
		return nil, err
	}

	// 2. Iterative auth checks from the unconflicted state map (v2) or
	// from an empty state map (v2.1).
	partial := &layered{top: StateMap{}}
	if !v21 {
		partial.base = unconflicted
	}
	if err := r.iterate(partial, sorted); err != nil {
		return nil, err
	}

	// 3. The other events by the mainline ordering based on the partially
	// resolved power levels.
	var rest []id.EventID
	for x := range full {
		if _, ok := xs[x]; !ok {
			rest = append(rest, x)
		}
	}
	pl, _ := partial.get(powerLevelsKey)
	rest, err = r.mainlineSort(rest, pl)
	if err != nil {
		return nil, err
	}

	// 4. Iterative auth checks on the partially resolved state.
	if err := r.iterate(partial, rest); err != nil {
		return nil, err
	}

	// 5. The unconflicted state map wins. It is ours (partition made it),
	// so the result is built in it.
	resolved := unconflicted
	for k, x := range partial.top {
		if _, ok := resolved[k]; !ok {
			resolved[k] = x
		}
	}
	return resolved, nil
}

// closeWithin returns starts together with every event of full reachable
// from them along auth_events through events of full.
//
// The spec says "the events in the auth chain of P which also belong to the
// full conflicted set"; Synapse and Ruma walk from P through the full
// conflicted set only, which differs when an auth chain leaves the full
// conflicted set and comes back into it. We walk as they do, since the
// network's rooms converge on what they compute.
func (r *resolver) closeWithin(starts []id.EventID, full set) set {
	out := set{}
	stack := append([]id.EventID(nil), starts...)
	for _, x := range starts {
		out[x] = struct{}{}
	}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, a := range r.evs[x].AuthEvents {
			if _, in := full[a]; !in {
				continue
			}
			if _, ok := out[a]; ok {
				continue
			}
			out[a] = struct{}{}
			stack = append(stack, a)
		}
	}
	return out
}

// authDifference returns the events of the auth difference that are not in
// the conflicted state set (those are in the full conflicted set anyway).
//
// The full auth chain of a state set is the auth chain of its unconflicted
// entries, U, which every set shares, plus that of its conflicted entries,
// X_i. So ∪C_i − ∩C_i = ∪X_i − ∩X_i − U: the small chains X_i give the
// candidates, and U is consulted only for those, and only if there are any.
func (r *resolver) authDifference(sets []StateMap, unconflicted StateMap, conflicted map[pdu.StateKey][]id.EventID, conflictedIDs set) (set, error) {
	chains := make([]set, len(sets))
	for i, s := range sets {
		var ids []id.EventID
		for k := range conflicted {
			if x, ok := s[k]; ok {
				ids = append(ids, x)
			}
		}
		c, err := r.chain(ids)
		if err != nil {
			return nil, err
		}
		chains[i] = c
	}
	cand := set{}
	for i, c := range chains {
		for x := range c {
			if _, ok := conflictedIDs[x]; ok {
				continue
			}
			if _, ok := cand[x]; ok {
				continue
			}
			for j, o := range chains {
				if _, ok := o[x]; !ok && j != i {
					cand[x] = struct{}{}
					break
				}
			}
		}
	}
	if len(cand) == 0 {
		return cand, nil
	}
	uIDs := make([]id.EventID, 0, len(unconflicted))
	for _, x := range unconflicted {
		uIDs = append(uIDs, x)
	}
	inU, err := r.inChainOf(uIDs, cand)
	if err != nil {
		return nil, err
	}
	for x := range inU {
		delete(cand, x)
	}
	return cand, nil
}

// subgraph returns the conflicted state subgraph (v2.1): the events on
// auth_events paths between events of the conflicted state set, endpoints
// included. Those are the events of the conflicted events' auth chains from
// which a conflicted event can be reached, plus the conflicted events.
func (r *resolver) subgraph(conflictedList []id.EventID, conflictedIDs set) (set, error) {
	// The walk loads every event of the chains: the edges are needed.
	chain, err := r.walk(conflictedList, nil)
	if err != nil {
		return nil, err
	}
	// reaches[x] tells whether a conflicted event is reachable from x
	// (x included), computed by an iterative depth-first search.
	const (
		unseen = iota
		open
		closed
	)
	status := make(map[id.EventID]int, len(chain)+len(conflictedIDs))
	reaches := make(map[id.EventID]bool, len(chain)+len(conflictedIDs))
	out := set{}
	var stack []id.EventID
	visit := func(root id.EventID) {
		stack = append(stack[:0], root)
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			switch status[x] {
			case unseen:
				status[x] = open
				if e := r.evs[x]; e != nil {
					for _, a := range e.AuthEvents {
						if status[a] == unseen {
							stack = append(stack, a)
						}
					}
				}
			case open:
				stack = stack[:len(stack)-1]
				status[x] = closed
				_, hit := conflictedIDs[x]
				if e := r.evs[x]; e != nil && !hit {
					for _, a := range e.AuthEvents {
						if reaches[a] {
							hit = true
							break
						}
					}
				}
				reaches[x] = hit
				if hit {
					out[x] = struct{}{}
				}
			default:
				stack = stack[:len(stack)-1]
			}
		}
	}
	for _, x := range conflictedList {
		visit(x)
	}
	return out, nil
}
