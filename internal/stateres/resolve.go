// Package stateres resolves the state of a room from several state sets:
// the algorithm of room version 1, state resolution v2 (room versions 2 to
// 11) and v2.1 (room version 12, MSC4297).
//
// It owns the algorithm only: it loads events through a Fetcher and applies
// the authorisation rules through mautrix's federation/eventauth. It imports
// internal/pdu and mautrix and nothing else from Myelin; it must not import
// storage or room. It sits under room, which calls Resolve when an event has
// several prev_events whose states disagree.
//
// Cost: the unconflicted state is taken as it is and not loaded, except that
// the auth difference (v2, v2.1) has to know whether an event seen in only
// some of the conflicted events' auth chains is in the auth chain of the
// unconflicted state; when such events exist, Resolve asks an AuthChainer
// for the unconflicted state's auth chain, or walks it itself, stopping as
// soon as every candidate has been found.
package stateres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/myelin-chat/myelin/internal/pdu"
	"maunium.net/go/mautrix/id"
)

// Fetcher loads events for resolution. Events it cannot find are omitted
// from the result.
type Fetcher interface {
	Events(ctx context.Context, ids []id.EventID) ([]*pdu.Event, error)
}

// AuthChainer is optionally implemented by a Fetcher. If it is, Resolve asks
// it for auth chains instead of walking auth_events itself, so that a store
// can answer from an index.
type AuthChainer interface {
	// AuthChain returns the union of the full auth chains of ids, not
	// including ids themselves (unless one is in another's auth chain).
	AuthChain(ctx context.Context, ids []id.EventID) (map[id.EventID]struct{}, error)
}

// StateMap maps (type, state_key) to an event ID.
type StateMap = map[pdu.StateKey]id.EventID

// ErrUnknownVersion is returned for a room version whose state resolution
// algorithm is not known.
var ErrUnknownVersion = errors.New("unknown room version")

// Resolve returns the resolved state of the given state sets for room
// version v.
//
// Conflicted events the Fetcher cannot find are left out of the resolution,
// as are auth events it cannot find. Events whose InternalMeta.Rejected is
// set are not used as auth events, per the spec's note on rejected events.
// The sets are not modified.
func Resolve(ctx context.Context, v id.RoomVersion, sets []StateMap, f Fetcher) (StateMap, error) {
	if !v.IsKnown() {
		return nil, fmt.Errorf("resolving state: %w %q", ErrUnknownVersion, v)
	}
	switch len(sets) {
	case 0:
		return StateMap{}, nil
	case 1:
		out := maps.Clone(sets[0])
		if out == nil {
			out = StateMap{}
		}
		return out, nil
	}
	unconflicted, conflicted := partition(sets)
	if len(conflicted) == 0 {
		return unconflicted, nil
	}
	r := newResolver(ctx, v, f)
	var (
		out StateMap
		err error
	)
	if v.StateResVersion() == id.StateResV1 {
		out, err = r.resolveV1(unconflicted, conflicted)
	} else {
		out, err = r.resolveV2(sets, unconflicted, conflicted)
	}
	if err != nil {
		return nil, fmt.Errorf("resolving state (room version %s): %w", v, err)
	}
	return out, nil
}

// partition splits the state sets into the unconflicted state map (keys
// present in every set with the same event) and, for every other key, the
// distinct events the sets hold for it, in the order the sets give them.
func partition(sets []StateMap) (StateMap, map[pdu.StateKey][]id.EventID) {
	unconflicted := make(StateMap, len(sets[0]))
	conflicted := map[pdu.StateKey][]id.EventID{}
	for i, s := range sets {
		for k, evID := range s {
			if _, done := unconflicted[k]; done {
				continue
			}
			if _, done := conflicted[k]; done {
				continue
			}
			// First sight of k: any earlier set holding k would have
			// classified it already, so for i > 0 an earlier set lacks it.
			same := i == 0
			for _, o := range sets[1:] {
				if !same {
					break
				}
				if got, ok := o[k]; !ok || got != evID {
					same = false
				}
			}
			if same {
				unconflicted[k] = evID
				continue
			}
			var vals []id.EventID
			for _, o := range sets {
				if got, ok := o[k]; ok && !slices.Contains(vals, got) {
					vals = append(vals, got)
				}
			}
			conflicted[k] = vals
		}
	}
	return unconflicted, conflicted
}
