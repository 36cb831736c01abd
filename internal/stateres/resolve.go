package stateres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/myelin-chat/myelin/internal/pdu"
	mpdu "maunium.net/go/mautrix/federation/pdu"
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

// ErrEventIDsNotFromMeta is returned for room versions 1 and 2 unless
// mautrix's pdu.UseInternalMetaForGetEventID is set (see the package doc).
var ErrEventIDsNotFromMeta = errors.New("room versions 1 and 2 need pdu.UseInternalMetaForGetEventID")

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
	if v.EventIDFormat() == id.EventIDFormatCustom && !mpdu.UseInternalMetaForGetEventID {
		return nil, fmt.Errorf("resolving state: %w", ErrEventIDsNotFromMeta)
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
	for k, x := range sets[0] {
		same := true
		for _, o := range sets[1:] {
			if got, ok := o[k]; !ok || got != x {
				same = false
				break
			}
		}
		if same {
			unconflicted[k] = x
		} else {
			conflicted[k] = values(sets, k)
		}
	}
	// A key missing from the first set is conflicted.
	for _, s := range sets[1:] {
		for k := range s {
			if _, ok := sets[0][k]; ok {
				continue
			}
			if _, ok := conflicted[k]; !ok {
				conflicted[k] = values(sets, k)
			}
		}
	}
	return unconflicted, conflicted
}

// values returns the distinct events the sets hold for k.
func values(sets []StateMap, k pdu.StateKey) []id.EventID {
	var vals []id.EventID
	for _, o := range sets {
		if got, ok := o[k]; ok && !slices.Contains(vals, got) {
			vals = append(vals, got)
		}
	}
	return vals
}
