package clientsync

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/notifications"
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
	// UseStateAfter asks for state_after instead of state (spec v1.16).
	UseStateAfter bool

	// Loaded by build once per response, so that rooms do not each query:
	// the user's account data changes and the receipts of their rooms.
	accountData accountDataChanges
	receipts    roomReceipts
	// timelines collects every room's timeline, decorated (bundled
	// aggregations) in one batch once all rooms are built.
	timelines *timelineBatch
	// typingUpto is the typing serial next_batch carries: typing changes
	// after it are left for the next sync, which would otherwise repeat them.
	typingUpto int64
	// changed holds the kinds of change the user was notified of after the
	// since token was issued; sections of other kinds cannot have news.
	changed notifier.Kind
	// wake is the user's notifier generation read before this build.
	wake Wake
	// ignored holds the users the user ignores (m.ignored_user_list).
	ignored map[id.UserID]bool
	// presenceUpto is the presence serial next_batch carries (0 when
	// presence is off).
	presenceUpto int64
	// unread holds the user's unread notification counts by room.
	unread map[id.RoomID]*notifications.RoomCounts
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
	var counted int64
	if req.unread, counted, err = s.unreadCounts(ctx, &req, now); err != nil {
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
	req.presenceUpto = s.presenceSerial()
	next := Token{Pos: now, Typing: typingSerial, Wake: wake, Presence: req.presenceUpto}
	if counted < now {
		next.Counted = max(counted, 1)
	}
	req.wake = wake

	memberships, err := s.localMemberships(ctx, req.User, wake)
	if err != nil {
		return nil, err
	}
	if req.ignored, err = s.ignoredUsers(ctx, req.User, wake); err != nil {
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
	req.timelines = &timelineBatch{}
	rf := &req.Filter.Room
	var blocksInvites *bool
	for _, m := range memberships {
		if m.StreamPos > now || !rf.MatchRoom(m.RoomID) {
			continue
		}
		changed := !initial && m.StreamPos > since
		switch m.Membership {
		case "join":
			_, hasEvents := active[m.RoomID]
			// A join after since is new unless it only changed the
			// profile of a user who was joined already.
			fresh := initial
			if changed {
				if fresh, err = s.newlyJoined(ctx, req.User, m, since); err != nil {
					return nil, err
				}
			}
			full := fresh || req.FullState
			if !full && !changed && !hasEvents && !s.hasRoomEphemeral(m.RoomID, req, since) && !s.hasRoomAccountData(m.RoomID, req) &&
				!req.countsChanged(m.RoomID, since, now) {
				continue
			}
			jr, err := s.joinedRoom(ctx, req, m, since, now, full, fresh)
			if err != nil {
				return nil, err
			}
			if jr != nil {
				req.fillUnread(m.RoomID, jr)
				resp.Rooms.Join[m.RoomID] = jr
			}
		case "invite":
			if initial || changed {
				if hidden, err := s.inviteIgnored(ctx, req, m); err != nil {
					return nil, err
				} else if hidden {
					continue
				}
				// Invites of a user who blocks them are not served (spec
				// v1.18), whenever they arrived; read only when one is
				// about to be.
				if blocksInvites == nil {
					b, err := s.accountDataStore.InvitesBlocked(ctx, req.User)
					if err != nil {
						return nil, err
					}
					blocksInvites = &b
				}
				if *blocksInvites {
					continue
				}
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
	req.timelines.decorate(ctx, s.rooms, req.viewer())
	if err := s.accountData(ctx, req, since, now, resp); err != nil {
		return nil, err
	}
	if err := s.presenceSection(ctx, req, resp); err != nil {
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

// joinedRoom builds rooms.join[roomID]. full asks for the whole state
// (initial sync, full_state, or a new join); fresh for the timeline of a
// room the client has no history of (initial sync or a new join).
func (s *Service) joinedRoom(ctx context.Context, req Request, m room.Membership, since, now int64, full, fresh bool) (*JoinedRoom, error) {
	after := since
	if fresh {
		after = 0
	}
	evs, limited, err := s.timeline(ctx, &req, m.RoomID, after, now)
	if err == nil {
		evs, err = s.visibleTimeline(ctx, req.User, m, evs)
	}
	if err != nil {
		return nil, err
	}
	if fresh && req.Since != nil {
		// A room joined since the last sync: the client holds none of its
		// history, so the timeline starts after a gap whatever its length
		// (Synapse marks it limited too).
		limited = true
	}
	jr := &JoinedRoom{
		Ephemeral:   EventList{Events: s.roomEphemeral(ctx, req, m.RoomID, since, now)},
		AccountData: EventList{Events: s.roomAccountData(ctx, req, m.RoomID, since, now)},
	}
	jr.Timeline = s.timelineSection(ctx, &req, evs, limited, m, now)

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
	rs := roomSpan{roomID: m.RoomID, timeline: evs, limited: limited, full: full, since: since, upto: now,
		complete: req.completeTimeline()}
	stateEvs, err := s.stateSection(ctx, &req, &rs, jr.Summary.Heroes)
	if err != nil {
		return nil, err
	}
	if !haveSummary && rs.memberChange {
		if jr.Summary, err = s.summary(ctx, m.RoomID, req.User); err != nil {
			return nil, err
		}
	}
	jr.section.Events = s.rooms.FormatAll(ctx, stateEvs, req.viewer(), false)
	if req.UseStateAfter {
		jr.StateAfter = &jr.section
	} else {
		jr.State = &jr.section
	}
	return jr, nil
}

// viewer is who the request's events are formatted for, and in which
// format.
func (req *Request) viewer() room.Viewer {
	return room.Viewer{User: req.User, Device: req.Device, Federation: req.Filter.EventFormat == "federation"}
}

// timelineLimit is the filter's timeline limit, or the default.
func (req *Request) timelineLimit() int {
	if l := req.Filter.Room.Timeline.Limit; l != nil {
		return *l
	}
	return defaultTimelineLimit
}

// completeTimeline reports whether a timeline that is not limited holds
// every event of its range: no filter or ignore list left any out.
func (req *Request) completeTimeline() bool {
	f := &req.Filter.Room.Timeline
	return len(req.ignored) == 0 && f.Types == nil && len(f.NotTypes) == 0 && f.Senders == nil &&
		len(f.NotSenders) == 0 && f.ContainsURL == nil
}

// timelineSection renders a timeline, each event with the user's
// membership at it (unsigned.membership), and the prev_batch that
// /messages pages back from: just before its first event, or, when it is
// empty, the end of the range.
func (s *Service) timelineSection(ctx context.Context, req *Request, evs []*room.Stored, limited bool, m room.Membership, upto int64) Timeline {
	t := Timeline{Events: req.timelines.format(ctx, s.rooms, evs, req.viewer()), Limited: limited}
	s.rooms.AnnotateMembership(ctx, req.User, evs, t.Events, m)
	start := upto + 1
	if len(evs) > 0 {
		start = evs[0].StreamPos
	}
	t.PrevBatch = Token{Pos: start - 1}.String()
	return t
}

func hasMemberEvent(evs []*room.Stored) bool {
	for _, ev := range evs {
		if ev.Type == "m.room.member" {
			return true
		}
	}
	return false
}

// timeline returns up to the filter's limit of events of the room in
// (after, upto], oldest first, and whether older ones were left out.
func (s *Service) timeline(ctx context.Context, req *Request, roomID id.RoomID, after, upto int64) ([]*room.Stored, bool, error) {
	limit := req.timelineLimit()
	f := &req.Filter.Room.Timeline
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
			if f.MatchEvent(ev) && !req.hidesEvent(ev) {
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

// newlyJoined reports whether a join that changed after since is a new
// one rather than a profile change: the user was not joined at since.
func (s *Service) newlyJoined(ctx context.Context, user id.UserID, m room.Membership, since int64) (bool, error) {
	if since <= 0 {
		return true, nil
	}
	st, err := s.rooms.StateAtPosition(ctx, m.RoomID, since)
	if err != nil {
		return false, err
	}
	ref, ok := st[room.StateKeyOf("m.room.member", user.String())]
	if !ok {
		return true, nil
	}
	ev, err := s.rooms.Event(ctx, ref.ID)
	if err != nil {
		return false, err
	}
	return ev.Membership() != "join", nil
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

// inviteIgnored reports whether the invite came from a user the user
// ignores: such invites are not shown (spec: Ignoring Users).
func (s *Service) inviteIgnored(ctx context.Context, req Request, m room.Membership) (bool, error) {
	if len(req.ignored) == 0 {
		return false, nil
	}
	if remote, err := s.rooms.RemoteInviteFor(ctx, req.User, m.RoomID); err != nil {
		return false, err
	} else if remote != nil && remote.Event.ID == m.EventID {
		return req.ignored[remote.Event.Sender], nil
	}
	inv, err := s.rooms.Event(ctx, m.EventID)
	if err != nil {
		return false, err
	}
	return req.ignored[inv.Sender], nil
}

// leftRoom builds rooms.leave[roomID]: the timeline up to the departure,
// and the state like a joined room's, as of then. With an empty timeline
// (limit 0) the departure itself is in the state, as in Synapse, so the
// client still learns why it left.
func (s *Service) leftRoom(ctx context.Context, req Request, m room.Membership, since int64) (*LeftRoom, error) {
	evs, limited, err := s.timeline(ctx, &req, m.RoomID, since, m.StreamPos)
	if err == nil {
		evs, err = s.visibleTimeline(ctx, req.User, m, evs)
	}
	if err != nil {
		return nil, err
	}
	lr := &LeftRoom{AccountData: EventList{Events: s.roomAccountData(ctx, req, m.RoomID, since, m.StreamPos)}}
	lr.Timeline = s.timelineSection(ctx, &req, evs, limited, m, m.StreamPos)
	rs := roomSpan{roomID: m.RoomID, timeline: evs, limited: limited, full: req.Since == nil || req.FullState,
		since: since, upto: m.StreamPos, complete: req.completeTimeline()}
	stateEvs, err := s.stateSection(ctx, &req, &rs, nil)
	if err != nil {
		return nil, err
	}
	lr.section.Events = s.rooms.FormatAll(ctx, stateEvs, req.viewer(), false)
	if req.UseStateAfter {
		lr.StateAfter = &lr.section
	} else {
		lr.State = &lr.section
	}
	return lr, nil
}

// timelineBatch holds the timelines of one response until decorate, so
// decorators read once per response rather than once per room.
type timelineBatch struct {
	evs []*room.Stored
	out []room.ClientEvent
}

// format renders evs without decorations, which decorate adds later (in
// place: each event's Unsigned is shared with the copy kept here).
func (b *timelineBatch) format(ctx context.Context, rooms *room.Service, evs []*room.Stored, v room.Viewer) []room.ClientEvent {
	if b == nil {
		return rooms.FormatAll(ctx, evs, v, false)
	}
	out := rooms.FormatBare(ctx, evs, v, false)
	b.evs = append(b.evs, evs...)
	b.out = append(b.out, out...)
	return out
}

// decorate runs the decorators over every timeline formatted so far.
func (b *timelineBatch) decorate(ctx context.Context, rooms *room.Service, v room.Viewer) {
	rooms.Decorate(ctx, v, b.evs, b.out)
}
