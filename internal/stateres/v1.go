package stateres

import (
	"bytes"
	"crypto/sha1"
	"maps"
	"slices"
	"strings"

	"github.com/myelin-chat/myelin/internal/pdu"
	"maunium.net/go/mautrix/id"
)

// resolveV1 is the state resolution algorithm of room version 1.
//
// Where the spec's prose leaves room, it follows Synapse, which the rooms of
// this version converged on: each key's events are resolved separately; the
// member keys are all checked against R as it stood after the join rules
// (not against each other's results); and when no event of a non-auth key
// passes, the one with the smallest depth is taken.
func (r *resolver) resolveV1(unconflicted StateMap, conflicted map[pdu.StateKey][]id.EventID) (StateMap, error) {
	var all []id.EventID
	for _, vals := range conflicted {
		all = append(all, vals...)
	}
	if err := r.load(all); err != nil {
		return nil, err
	}
	// R: the unconflicted state, to start with.
	R := &layered{base: unconflicted, top: StateMap{}}
	// Load the entries of R that the conflicted events' auth checks read.
	var need []id.EventID
	for _, x := range all {
		if e := r.evs[x]; e != nil {
			for _, k := range e.AuthEventSelection(r.v) {
				if s, ok := R.get(k); ok {
					need = append(need, s)
				}
			}
		}
	}
	if err := r.load(need); err != nil {
		return nil, err
	}

	keys := slices.SortedFunc(maps.Keys(conflicted), func(a, b pdu.StateKey) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.StateKey, b.StateKey)
	})
	done := map[pdu.StateKey]bool{}
	// Power levels, then join rules, then members: each key's events by
	// ascending depth, then descending sha1(event_id), adopted one after
	// the other while the auth rules allow them in R.
	for _, phase := range []func(pdu.StateKey) bool{
		func(k pdu.StateKey) bool { return k == powerLevelsKey },
		func(k pdu.StateKey) bool { return k.Type == typeJoinRules },
		func(k pdu.StateKey) bool { return k.Type == typeMember },
	} {
		results := StateMap{}
		for _, k := range keys {
			if done[k] || !phase(k) {
				continue
			}
			done[k] = true
			if x, ok := r.v1AuthKey(R, k, r.v1Sorted(conflicted[k])); ok {
				results[k] = x
			}
		}
		maps.Copy(R.top, results)
	}
	// Every other key: the event of greatest depth, then smallest
	// sha1(event_id), that the auth rules allow in R.
	results := StateMap{}
	for _, k := range keys {
		if done[k] {
			continue
		}
		list := r.v1Sorted(conflicted[k])
		if len(list) == 0 {
			continue
		}
		pick := list[len(list)-1]
		for _, x := range list {
			if r.v1Allowed(R, k, "", x) {
				pick = x
				break
			}
		}
		results[k] = pick
	}
	maps.Copy(R.top, results)
	// Conflicted keys are not in the unconflicted map, which is ours
	// (partition made it): the result is built in it.
	maps.Copy(unconflicted, R.top)
	return unconflicted, nil
}

// v1AuthKey adopts the events of list (ascending order) for key k: the
// first unconditionally, each next one if allowed with the previous one in
// R, stopping at the first that is not.
func (r *resolver) v1AuthKey(R *layered, k pdu.StateKey, list []id.EventID) (id.EventID, bool) {
	if len(list) == 0 {
		return "", false
	}
	slices.Reverse(list)
	prev := list[0]
	for _, x := range list[1:] {
		if !r.v1Allowed(R, k, prev, x) {
			break
		}
		prev = x
	}
	return prev, true
}

// v1Allowed checks x against the auth events R selects for it, with R[k]
// replaced by prev when prev is set.
func (r *resolver) v1Allowed(R *layered, k pdu.StateKey, prev id.EventID, x id.EventID) bool {
	lookup := func(key pdu.StateKey) (id.EventID, bool) {
		if prev != "" && key == k {
			return prev, true
		}
		return R.get(key)
	}
	e := r.evs[x]
	return r.authorize(e, r.authEvents(e, lookup, false)) == nil
}

// v1Sorted returns the loaded state events of ids by descending depth, then
// ascending sha1(event_id).
func (r *resolver) v1Sorted(ids []id.EventID) []id.EventID {
	type item struct {
		id    id.EventID
		depth int64
		hash  [sha1.Size]byte
	}
	var items []item
	for _, x := range ids {
		if e := r.evs[x]; e != nil && e.IsState() {
			items = append(items, item{x, e.Depth, sha1.Sum([]byte(x))})
		}
	}
	slices.SortFunc(items, func(a, b item) int {
		if a.depth != b.depth {
			if a.depth > b.depth {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.hash[:], b.hash[:])
	})
	out := make([]id.EventID, len(items))
	for i, it := range items {
		out[i] = it.id
	}
	return out
}
