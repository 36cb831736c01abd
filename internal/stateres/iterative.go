package stateres

import (
	"github.com/myelin-chat/myelin/internal/pdu"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// layered is a state map written over a read-only base, so that the large
// unconflicted state map is neither copied nor modified.
type layered struct {
	base StateMap // read only
	top  StateMap
}

func (l *layered) get(k pdu.StateKey) (id.EventID, bool) {
	if x, ok := l.top[k]; ok {
		return x, true
	}
	x, ok := l.base[k]
	return x, ok
}

// iterate applies the iterative auth checks: each event of list, in order,
// replaces its key in state if the authorisation rules allow it against the
// auth events selected for it (see authEvents). Every event of list must be
// loaded.
func (r *resolver) iterate(state *layered, list []id.EventID) error {
	// Load in one call the auth events of every event and the state entries
	// they may select; later entries are events of list, already loaded.
	var need []id.EventID
	for _, x := range list {
		e := r.evs[x]
		need = append(need, e.AuthEvents...)
		for _, k := range e.AuthEventSelection(r.v) {
			if s, ok := state.get(k); ok {
				need = append(need, s)
			}
		}
	}
	if err := r.load(need); err != nil {
		return err
	}
	for i, x := range list {
		if i%256 == 0 {
			if err := r.ctx.Err(); err != nil {
				return err
			}
		}
		e := r.evs[x]
		if r.authorize(e, r.authEvents(e, state.get, true)) == nil {
			state.top[e.Key()] = e.ID
		}
	}
	return nil
}

// authEvents selects the auth events for checking e: for each key of the
// auth events selection, the event the state holds for it, or else (with
// own) the event of that key among e's auth_events. Rejected events are not
// used. The create event is never passed in room versions where it comes
// from the room ID, as eventauth fetches it itself.
func (r *resolver) authEvents(e *pdu.Event, state func(pdu.StateKey) (id.EventID, bool), own bool) []*mpdu.PDU {
	sel := e.AuthEventSelection(r.v)
	picked := make([]*mpdu.PDU, len(sel))
	if own {
		for _, a := range e.AuthEvents {
			ae := r.evs[a]
			if !usable(ae) {
				continue
			}
			if i := indexOf(sel, ae.Key()); i >= 0 {
				picked[i] = ae.PDU
			}
		}
	}
	for i, k := range sel {
		if s, ok := state(k); ok {
			if se := r.evs[s]; usable(se) {
				picked[i] = se.PDU
			}
		}
	}
	// Non-nil even when empty: a nil slice makes eventauth load e's own
	// auth_events instead.
	out := make([]*mpdu.PDU, 0, len(sel))
	for _, p := range picked {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func usable(e *pdu.Event) bool {
	return e != nil && e.StateKey != nil && !e.InternalMeta.Rejected
}

func indexOf(sel mpdu.AuthEventSelection, k pdu.StateKey) int {
	for i, s := range sel {
		if s == k {
			return i
		}
	}
	return -1
}
