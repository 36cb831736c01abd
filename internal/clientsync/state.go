package clientsync

import (
	"context"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/room"
)

// roomSpan is what the state section of one room is computed from: the
// timeline chosen for (since, upto] and how it was cut.
type roomSpan struct {
	roomID   id.RoomID
	timeline []*room.Stored
	// limited: events between since and the timeline were left out.
	limited bool
	// full asks for the whole state rather than the changes since since.
	full        bool
	since, upto int64
	// complete: a timeline that is not limited holds every event of the
	// range (no filter or ignore list dropped any).
	complete bool
	// memberChange is set by stateSection when the state changes it sends
	// hold a member event, not counting the members lazy loading adds:
	// only then can the room summary have changed.
	memberChange bool

	start, end room.State
}

// startState is the state just before the first timeline event, or at upto
// when the timeline is empty.
func (s *Service) startState(ctx context.Context, rs *roomSpan) (room.State, error) {
	if rs.start != nil {
		return rs.start, nil
	}
	var err error
	if len(rs.timeline) > 0 {
		rs.start, err = s.rooms.StateAt(ctx, rs.timeline[0], false)
	} else {
		rs.start, err = s.rooms.StateAtPosition(ctx, rs.roomID, rs.upto)
	}
	return rs.start, err
}

// endState is the state at the end of the timeline, upto: after its last
// event when the timeline reaches upto, which it does when nothing was
// left out of its end.
func (s *Service) endState(ctx context.Context, rs *roomSpan) (room.State, error) {
	if rs.end != nil {
		return rs.end, nil
	}
	var err error
	if n := len(rs.timeline); n > 0 && rs.complete {
		rs.end, err = s.rooms.StateAt(ctx, rs.timeline[n-1], true)
	} else {
		rs.end, err = s.rooms.StateAtPosition(ctx, rs.roomID, rs.upto)
	}
	return rs.end, err
}

// targetState is the state a state section describes: at the end of the
// timeline for state_after, else at its start.
func (s *Service) targetState(ctx context.Context, rs *roomSpan, after bool) (room.State, error) {
	if after {
		return s.endState(ctx, rs)
	}
	return s.startState(ctx, rs)
}

// stateSection returns the events of a room's state section (sync.yaml):
//   - state (the default): the state at the start of the timeline, all of
//     it when rs.full, else what changed since since: nothing when the
//     timeline follows on from since, and after a gap every entry that
//     differs from the state at since;
//   - state_after (use_state_after): the same as of the end of the
//     timeline, including the timeline's own state events, which clients
//     then do not apply.
//
// With lazy-loaded members, a full state holds only the members of the
// timeline's senders, the heroes and the user; changes keep every member
// event that changed in the gap (the spec requires them whether redundant
// or not) and add the senders' and heroes' current ones.
func (s *Service) stateSection(ctx context.Context, req *Request, rs *roomSpan, heroes []id.UserID) ([]*room.Stored, error) {
	sf := &req.Filter.Room.State
	after := req.UseStateAfter
	var need map[string]bool
	if sf.LazyLoadMembers {
		need = lazyNeed(req.User, rs.timeline, heroes)
	}
	var out []*room.Stored
	switch {
	case rs.full:
		st, err := s.targetState(ctx, rs, after)
		if err != nil {
			return nil, err
		}
		if need != nil {
			// Only the members kept are loaded: in a big room the others
			// are nearly all of the state.
			st = lazyState(st, need)
		}
		if out, err = s.rooms.StateEvents(ctx, st); err != nil {
			return nil, err
		}
	case rs.limited:
		st, err := s.targetState(ctx, rs, after)
		if err != nil {
			return nil, err
		}
		prev, err := s.rooms.StateAtPosition(ctx, rs.roomID, rs.since)
		if err != nil {
			return nil, err
		}
		var changed []id.EventID
		for k, ref := range st {
			if p, ok := prev[k]; !ok || p.ID != ref.ID {
				changed = append(changed, ref.ID)
			}
		}
		if out, err = s.rooms.Events(ctx, changed); err != nil {
			return nil, err
		}
	case after:
		// The timeline follows on from since: the changes are its state
		// events (or, when a filter thinned it, the range's), those still
		// in force at its end.
		var cands []*room.Stored
		if rs.complete {
			for _, ev := range rs.timeline {
				if ev.IsState() {
					cands = append(cands, ev)
				}
			}
		} else {
			var err error
			if cands, err = s.rooms.StateChangesBetween(ctx, rs.roomID, rs.since, rs.upto+1); err != nil {
				return nil, err
			}
		}
		if len(cands) > 0 {
			st, err := s.endState(ctx, rs)
			if err != nil {
				return nil, err
			}
			for _, ev := range cands {
				if ref, ok := st[ev.Key()]; ok && ref.ID == ev.ID {
					out = append(out, ev)
				}
			}
		}
	}
	rs.memberChange = hasMemberEvent(out)
	if need != nil && !rs.full {
		var err error
		if out, err = s.addLazyMembers(ctx, rs, out, need, req.User, after); err != nil {
			return nil, err
		}
	}
	out = sf.FilterEvents(out)
	if !after {
		// Events already in the timeline are not repeated in state.
		inTimeline := make(map[id.EventID]bool, len(rs.timeline))
		for _, ev := range rs.timeline {
			inTimeline[ev.ID] = true
		}
		out = slices.DeleteFunc(out, func(ev *room.Stored) bool { return inTimeline[ev.ID] })
	}
	return out, nil
}

// addLazyMembers adds to a lazy-loading incremental state section the
// member events of need (the timeline's senders and the heroes) that it
// lacks, as of the section's point in the timeline. The user's own is not
// added: the client has it since it joined.
func (s *Service) addLazyMembers(ctx context.Context, rs *roomSpan, out []*room.Stored, need map[string]bool, user id.UserID, after bool) ([]*room.Stored, error) {
	have := map[string]bool{}
	for _, ev := range out {
		if ev.Type == "m.room.member" {
			have[*ev.StateKey] = true
		}
	}
	var st room.State
	var missing []id.EventID
	for u := range need {
		if have[u] || u == user.String() {
			continue
		}
		if st == nil {
			var err error
			if st, err = s.targetState(ctx, rs, after); err != nil {
				return nil, err
			}
		}
		if ref, ok := st[room.StateKeyOf("m.room.member", u)]; ok {
			missing = append(missing, ref.ID)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	extra, err := s.rooms.Events(ctx, missing)
	if err != nil {
		return nil, err
	}
	return append(out, extra...), nil
}

// lazyNeed returns the users whose member events a lazy-loading sync
// sends: the timeline's senders, the heroes and the user.
func lazyNeed(user id.UserID, timeline []*room.Stored, heroes []id.UserID) map[string]bool {
	need := map[string]bool{user.String(): true}
	for _, ev := range timeline {
		need[ev.Sender.String()] = true
	}
	for _, h := range heroes {
		need[h.String()] = true
	}
	return need
}

// lazyState returns st without the member events of users not in need.
func lazyState(st room.State, need map[string]bool) room.State {
	out := make(room.State, len(need)+8)
	for k, ref := range st {
		if k.Type != "m.room.member" || need[k.StateKey] {
			out[k] = ref
		}
	}
	return out
}
