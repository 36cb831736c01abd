package clientsync

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/room"
)

// Request is a parsed /sync request.
type Request struct {
	User      id.UserID
	Device    id.DeviceID
	Since     *Token
	Timeout   time.Duration
	FullState bool
	Filter    *Filter

	// Loaded by build once per response, so that rooms do not each query:
	// the user's account data changes and the receipts of their rooms.
	accountData accountDataChanges
	receipts    roomReceipts
	// typingUpto is the typing serial next_batch carries: typing changes
	// after it are left for the next sync, which would otherwise repeat them.
	typingUpto int64
	// changed holds the kinds of change the user was notified of after the
	// since token was issued; sections of other kinds cannot have news.
	changed notifier.Kind
	// wake is the user's notifier generation read before this build.
	wake Wake
}

// defaultTimelineLimit is the timeline size when the filter sets none.
const defaultTimelineLimit = 10

// Sync answers a /sync request. With a since token and a timeout, it waits
// on the notifier until something new arrives for the user or the timeout
// passes.
func (s *Service) Sync(ctx context.Context, req Request) (*Response, error) {
	if req.Filter == nil {
		req.Filter = &Filter{}
	}
	waitCtx := ctx
	if req.Since != nil && !req.FullState && req.Timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	for first := true; ; first = false {
		// The generation is read before the database, so a change that
		// lands after build moves it and Wait returns at once.
		gen := s.notifier.Generation(req.User)
		wake := Wake{Epoch: s.notifier.Epoch(), Gen: gen}
		if first && waitCtx != ctx && req.Since.Wake != (Wake{}) && req.Since.Wake == wake && req.Since.ToDevice == (e2ee.ToDeviceCursor{}) {
			// Nothing has happened to the user since the response that
			// issued the token was built, and it left no to-device
			// messages behind: building now would find nothing.
			if !s.notifier.Wait(waitCtx, req.User, gen) {
				return s.build(ctx, req, wake)
			}
			continue
		}
		resp, err := s.build(ctx, req, wake)
		if err != nil {
			return nil, err
		}
		if waitCtx == ctx || !resp.empty() {
			return resp, nil
		}
		if !s.notifier.Wait(waitCtx, req.User, gen) {
			return resp, nil // timeout or client gone: answer with no news
		}
	}
}

// build assembles one response from the database as it is now. wake is the
// user's notifier generation, read before anything else.
func (s *Service) build(ctx context.Context, req Request, wake Wake) (*Response, error) {
	now, err := s.db.CurrentID(ctx, "stream")
	if err != nil {
		return nil, err
	}
	resp := newResponse()
	var since int64
	if req.Since != nil {
		since = req.Since.Pos
		if since > now {
			since = now // a token from the future (e.g. after a restore) is clamped
		}
		since = max(since, 0) // pagination tokens into backfilled history
	}
	initial := req.Since == nil
	req.changed = notifier.All
	if !initial {
		req.changed = s.changedSince(req.User, req.Since.Wake)
	}
	typingSerial := s.typingSerial()
	req.typingUpto = typingSerial
	next := Token{Pos: now, Typing: typingSerial, Wake: wake}
	req.wake = wake

	memberships, err := s.localMemberships(ctx, req.User, wake)
	if err != nil {
		return nil, err
	}
	var active map[id.RoomID]int64
	if !initial && req.changed&(notifier.Room|notifier.Membership) != 0 {
		joined := make([]id.RoomID, 0, len(memberships))
		for _, m := range memberships {
			if m.Membership == "join" {
				joined = append(joined, m.RoomID)
			}
		}
		if active, err = s.rooms.LatestPositionsSince(ctx, joined, since, now); err != nil {
			return nil, err
		}
	}
	if req.accountData, err = s.loadAccountData(ctx, req, since, now); err != nil {
		return nil, err
	}
	if req.receipts, err = s.loadReceipts(ctx, req, memberships, since, now); err != nil {
		return nil, err
	}
	rf := &req.Filter.Room
	for _, m := range memberships {
		if m.StreamPos > now || !rf.MatchRoom(m.RoomID) {
			continue
		}
		changed := !initial && m.StreamPos > since
		switch m.Membership {
		case "join":
			_, hasEvents := active[m.RoomID]
			full := initial || req.FullState || changed
			if !full && !hasEvents && !s.hasRoomEphemeral(m.RoomID, req, since) && !s.hasRoomAccountData(m.RoomID, req) {
				continue
			}
			jr, err := s.joinedRoom(ctx, req, m, since, now, full, initial || changed)
			if err != nil {
				return nil, err
			}
			if jr != nil {
				resp.Rooms.Join[m.RoomID] = jr
			}
		case "invite":
			if initial || changed {
				ir, err := s.invitedRoom(ctx, req.User, m)
				if err != nil {
					return nil, err
				}
				resp.Rooms.Invite[m.RoomID] = ir
			}
		case "knock":
			if initial || changed {
				kr, err := s.knockedRoom(ctx, req.User, m)
				if err != nil {
					return nil, err
				}
				resp.Rooms.Knock[m.RoomID] = kr
			}
		case "leave", "ban":
			if (initial && !rf.IncludeLeave) || (!initial && !changed) {
				continue
			}
			lr, err := s.leftRoom(ctx, req, m, since)
			if err != nil {
				return nil, err
			}
			resp.Rooms.Leave[m.RoomID] = lr
		}
	}
	if err := s.accountData(ctx, req, since, now, resp); err != nil {
		return nil, err
	}
	if err := s.encryption(ctx, req, since, now, resp); err != nil {
		return nil, err
	}
	next.ToDevice = resp.toDeviceCut
	resp.NextBatch = next.String()
	return resp, nil
}

// changedSince returns the kinds of change the user was notified of after
// w; a zero Wake (a token that carries none) may hide anything.
func (s *Service) changedSince(user id.UserID, w Wake) notifier.Kind {
	if w == (Wake{}) {
		return notifier.All
	}
	return s.notifier.ChangedSince(user, w.Epoch, w.Gen)
}

// localMemberships returns the user's memberships, from the cache while no
// membership change was notified after it was filled. wake is the
// generation read before this build, so a list loaded now holds as of it.
func (s *Service) localMemberships(ctx context.Context, user id.UserID, wake Wake) ([]room.Membership, error) {
	if c, ok := s.memberships.Get(user); ok && s.changedSince(user, c.wake)&notifier.Membership == 0 {
		return c.list, nil
	}
	list, err := s.rooms.LocalMemberships(ctx, user, 0)
	if err != nil {
		return nil, err
	}
	if len(list) <= maxCachedRooms {
		s.memberships.Add(user, cachedMemberships{wake: wake, list: list})
	}
	return list, nil
}

// joinedRoom builds rooms.join[roomID]. full asks for the whole state at
// the start of the timeline (initial sync, full_state, or a new join).
func (s *Service) joinedRoom(ctx context.Context, req Request, m room.Membership, since, now int64, full, fresh bool) (*JoinedRoom, error) {
	tf := &req.Filter.Room.Timeline
	limit := defaultTimelineLimit
	if tf.Limit != nil {
		limit = *tf.Limit
	}
	after := since
	if fresh {
		after = 0
	}
	evs, limited, err := s.timeline(ctx, m.RoomID, after, now, limit, tf)
	if err != nil {
		return nil, err
	}
	jr := &JoinedRoom{
		Ephemeral:   EventList{Events: s.roomEphemeral(ctx, req, m.RoomID, since, now)},
		AccountData: EventList{Events: s.roomAccountData(ctx, req, m.RoomID, since, now)},
	}
	v := room.Viewer{User: req.User, Device: req.Device}
	jr.Timeline.Events = s.rooms.FormatAll(ctx, evs, v, false)
	jr.Timeline.Limited = limited
	timelineStart := now + 1
	if len(evs) > 0 {
		timelineStart = evs[0].StreamPos
	}
	jr.Timeline.PrevBatch = Token{Pos: timelineStart - 1}.String()

	// The summary may be left out when it has not changed since the last
	// sync, which it cannot have without a membership change; counting a
	// big room's members for every message would cost more than the rest
	// of the sync.
	haveSummary := full || hasMemberEvent(evs)
	if haveSummary {
		if jr.Summary, err = s.summary(ctx, m.RoomID, req.User); err != nil {
			return nil, err
		}
	}
	sf := &req.Filter.Room.State
	var stateEvs []*room.Stored
	switch {
	case full:
		st, err := s.stateBefore(ctx, m.RoomID, evs, now)
		if err != nil {
			return nil, err
		}
		if sf.LazyLoadMembers {
			// Only the members lazyMembers keeps are loaded: in a big room
			// the others are nearly all of the state.
			st = lazyState(st, lazyNeed(req.User, evs, jr.Summary.Heroes))
		}
		if stateEvs, err = s.rooms.StateEvents(ctx, st); err != nil {
			return nil, err
		}
	case limited:
		// State that changed in the gap between since and the timeline and
		// still holds at the timeline's start.
		st, err := s.stateBefore(ctx, m.RoomID, evs, now)
		if err != nil {
			return nil, err
		}
		changes, err := s.rooms.StateChangesBetween(ctx, m.RoomID, since, timelineStart)
		if err != nil {
			return nil, err
		}
		for _, ev := range changes {
			if ref, ok := st[ev.Key()]; ok && ref.ID == ev.ID {
				stateEvs = append(stateEvs, ev)
			}
		}
	}
	if !haveSummary && hasMemberEvent(stateEvs) {
		if jr.Summary, err = s.summary(ctx, m.RoomID, req.User); err != nil {
			return nil, err
		}
	}
	stateEvs = sf.FilterEvents(stateEvs)
	if sf.LazyLoadMembers {
		stateEvs, err = s.lazyMembers(ctx, m.RoomID, req.User, stateEvs, evs, full, jr.Summary.Heroes)
		if err != nil {
			return nil, err
		}
	}
	// Events already in the timeline are not repeated in state.
	inTimeline := make(map[id.EventID]bool, len(evs))
	for _, ev := range evs {
		inTimeline[ev.ID] = true
	}
	stateEvs = slices.DeleteFunc(stateEvs, func(ev *room.Stored) bool { return inTimeline[ev.ID] })
	jr.State.Events = s.rooms.FormatAll(ctx, stateEvs, v, false)
	return jr, nil
}

func hasMemberEvent(evs []*room.Stored) bool {
	for _, ev := range evs {
		if ev.Type == "m.room.member" {
			return true
		}
	}
	return false
}

// timeline returns up to limit events of the room in (after, upto], oldest
// first, and whether older ones were left out.
func (s *Service) timeline(ctx context.Context, roomID id.RoomID, after, upto int64, limit int, f *RoomEventFilter) ([]*room.Stored, bool, error) {
	if limit == 0 {
		return nil, true, nil
	}
	var out []*room.Stored
	before := upto + 1
	limited := false
	// Fetch in pages until the filter has let limit events through.
	for range 10 {
		page, err := s.rooms.Timeline(ctx, roomID, room.Range{After: after, Before: before, Backwards: true, Limit: limit + 1})
		if err != nil {
			return nil, false, err
		}
		more := len(page) > limit
		if more {
			page = page[:limit]
		}
		for _, ev := range page {
			if f.MatchEvent(ev) {
				out = append(out, ev)
			}
			if len(out) > limit {
				break
			}
		}
		if len(out) > limit {
			out = out[:limit]
			limited = true
			break
		}
		if !more {
			break
		}
		before = page[len(page)-1].StreamPos
		if len(out) == limit {
			limited = true
			break
		}
	}
	slices.Reverse(out)
	return out, limited, nil
}

// stateBefore returns the room state just before the first timeline event,
// or the state as of now when the timeline is empty.
func (s *Service) stateBefore(ctx context.Context, roomID id.RoomID, timeline []*room.Stored, now int64) (room.State, error) {
	if len(timeline) > 0 {
		return s.rooms.StateAt(ctx, timeline[0], false)
	}
	return s.rooms.StateAtPosition(ctx, roomID, now)
}

// lazyMembers keeps only the member events of the timeline's senders, of
// the summary's heroes and the user's own, adding any that the state
// section lacks.
func (s *Service) lazyMembers(ctx context.Context, roomID id.RoomID, user id.UserID, state, timeline []*room.Stored, full bool, heroes []id.UserID) ([]*room.Stored, error) {
	need := lazyNeed(user, timeline, heroes)
	out := state[:0:0]
	have := map[string]bool{}
	for _, ev := range state {
		if ev.Type == "m.room.member" {
			if !need[*ev.StateKey] {
				continue
			}
			have[*ev.StateKey] = true
		}
		out = append(out, ev)
	}
	var st room.State
	var err error
	if len(timeline) > 0 {
		st, err = s.rooms.StateAt(ctx, timeline[0], false)
	} else {
		st, err = s.rooms.CurrentState(ctx, roomID)
	}
	if err != nil {
		return nil, err
	}
	var missing []id.EventID
	for u := range need {
		if have[u] {
			continue
		}
		if !full && u == user.String() {
			continue
		}
		if ref, ok := st[room.StateKeyOf("m.room.member", u)]; ok {
			missing = append(missing, ref.ID)
		}
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

// summary computes heroes and member counts from current state.
func (s *Service) summary(ctx context.Context, roomID id.RoomID, user id.UserID) (Summary, error) {
	counts, heroes, err := s.rooms.MemberSummary(ctx, roomID, user, 5)
	if err != nil {
		return Summary{}, err
	}
	j, i := counts["join"], counts["invite"]
	return Summary{Heroes: heroes, JoinedMemberCount: &j, InvitedMemberCount: &i}, nil
}

// invitedRoom builds rooms.invite[roomID] from stripped state.
func (s *Service) invitedRoom(ctx context.Context, user id.UserID, m room.Membership) (*InvitedRoom, error) {
	evs, err := s.strippedState(ctx, user, m)
	if err != nil {
		return nil, err
	}
	ir := &InvitedRoom{}
	ir.InviteState.Events = evs
	return ir, nil
}

// knockedRoom builds rooms.knock[roomID] from stripped state.
func (s *Service) knockedRoom(ctx context.Context, user id.UserID, m room.Membership) (*KnockedRoom, error) {
	evs, err := s.strippedState(ctx, user, m)
	if err != nil {
		return nil, err
	}
	kr := &KnockedRoom{}
	kr.KnockState.Events = evs
	return kr, nil
}

// strippedState is what a user invited to or knocking on a room is shown:
// the stripped state at their membership event, or, for a room this server
// is not in, the stripped state the other server sent.
func (s *Service) strippedState(ctx context.Context, user id.UserID, m room.Membership) ([]StrippedEvent, error) {
	out := []StrippedEvent{}
	if remote, err := s.rooms.RemoteInviteFor(ctx, user, m.RoomID); err != nil {
		return nil, err
	} else if remote != nil && remote.Event.ID == m.EventID {
		_ = json.Unmarshal(remote.InviteState, &out)
		if out == nil {
			out = []StrippedEvent{}
		}
		ev := remote.Event
		return append(out, StrippedEvent{Content: ev.Content, Sender: ev.Sender, StateKey: *ev.StateKey, Type: ev.Type}), nil
	}
	inv, err := s.rooms.Event(ctx, m.EventID)
	if err != nil {
		return nil, err
	}
	st, err := s.rooms.StateAt(ctx, inv, true)
	if err != nil {
		return nil, err
	}
	return s.rooms.Stripped(ctx, st, room.StateKeyOf("m.room.member", inv.Sender.String()), inv.Key())
}

// leftRoom builds rooms.leave[roomID]: the timeline up to the departure.
func (s *Service) leftRoom(ctx context.Context, req Request, m room.Membership, since int64) (*LeftRoom, error) {
	tf := &req.Filter.Room.Timeline
	limit := defaultTimelineLimit
	if tf.Limit != nil {
		limit = *tf.Limit
	}
	evs, limited, err := s.timeline(ctx, m.RoomID, since, m.StreamPos, limit, tf)
	if err != nil {
		return nil, err
	}
	v := room.Viewer{User: req.User, Device: req.Device}
	lr := &LeftRoom{AccountData: EventList{Events: s.roomAccountData(ctx, req, m.RoomID, since, m.StreamPos)}}
	lr.Timeline.Events = s.rooms.FormatAll(ctx, evs, v, false)
	lr.Timeline.Limited = limited
	start := m.StreamPos
	if len(evs) > 0 {
		start = evs[0].StreamPos
	}
	lr.Timeline.PrevBatch = Token{Pos: start - 1}.String()
	lr.State.Events = []room.ClientEvent{}
	return lr, nil
}
