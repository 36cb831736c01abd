package slidingsync

import (
	"cmp"
	"context"
	"maps"
	"slices"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/notifications"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/room"
)

// heroCount is how many members an unnamed room's heroes list.
const heroCount = 5

// room builds one room's entry: whole for a room the connection does not
// have (or has with another membership), else only what changed since
// the client got it, or nil when nothing did. It returns what the client
// holds of the room afterwards.
func (s *Service) room(ctx context.Context, b *build, w *wanted) (*RoomResp, sentRoom, error) {
	m := w.c.m
	sent, had := b.base.rooms[m.RoomID]
	stateCfg := w.stateConfig()
	fresh := !had || sent.membership != m.Membership
	entry := sentRoom{pos: b.now, membership: m.Membership, state: stateCfg, limit: w.limit}
	if had && !fresh && sent.state == stateCfg {
		entry.members = sent.members
	}
	// Whether the room is a DM changes only with m.direct (or the invite
	// that said so): looked at again only when account data changed.
	entry.dm = sent.dm
	dmChanged := false
	if fresh || b.changed&notifier.AccountData != 0 {
		dm, err := s.isDM(ctx, b, w.c)
		if err != nil {
			return nil, entry, err
		}
		dmChanged = !fresh && dm != sent.dm
		entry.dm = dm
	}
	switch m.Membership {
	case "invite", "knock":
		if !fresh {
			return nil, entry, nil
		}
		return s.strippedRoom(ctx, b, w)
	case "leave", "ban":
		entry.pos = m.StreamPos
	}
	upto := entry.pos
	cfgChanged := !fresh && sent.state != stateCfg
	// A larger timeline limit resends the latest events up to it, at once
	// (MSC4186 "Changes to timeline_limit").
	expanded := !fresh && w.limit > sent.limit
	// The counts changed after the client got the room (a read receipt
	// clears them without any event).
	rc := b.unread[m.RoomID]
	countsChanged := !fresh && rc != nil && rc.StreamPos > sent.pos && rc.StreamPos <= b.now
	if !fresh && !cfgChanged && !expanded {
		if latest, ok := b.latest[m.RoomID]; !ok || latest <= sent.pos || sent.pos >= upto {
			if dmChanged || countsChanged {
				rr := &RoomResp{IsDM: entry.dm, Membership: m.Membership, Lists: w.lists}
				if countsChanged {
					setCounts(rr, rc)
				}
				return rr, entry, nil
			}
			return nil, entry, nil
		}
	}
	after := int64(0)
	if !fresh && !expanded {
		after = sent.pos
	}
	evs, limited, err := s.timeline(ctx, b, m, after, upto, w.limit)
	if err != nil {
		return nil, entry, err
	}
	rr := &RoomResp{Initial: fresh, Limited: limited, Membership: m.Membership, Lists: w.lists,
		ExpandedTimeline: expanded, UnstableExpandedTimeline: expanded}
	if m.Membership == "join" {
		rr.BumpStamp = &w.c.stamp
	}
	live := 0
	if !b.base.fresh {
		for _, ev := range evs {
			if ev.StreamPos > b.since {
				live++
			}
		}
	}
	rr.NumLive = &live
	start := upto
	if len(evs) > 0 {
		start = evs[0].StreamPos - 1
	}
	rr.PrevBatch = clientsync.Token{Pos: start}.String()
	out := s.rooms.FormatBare(ctx, evs, b.viewer, false)
	s.rooms.AnnotateMembership(ctx, b.user, evs, out, m)
	b.tlEvs, b.tlOut = append(b.tlEvs, evs...), append(b.tlOut, out...)
	rr.Timeline = out

	var st room.State
	if m.Membership == "join" {
		st, err = s.rooms.CurrentState(ctx, m.RoomID)
	} else {
		st, err = s.rooms.StateAtPosition(ctx, m.RoomID, m.StreamPos)
	}
	if err != nil {
		return nil, entry, err
	}
	rs := parseRequired(w.required, w.exclude, b.user)
	full := fresh || cfgChanged
	var stateEvs []*room.Stored
	nameChanged, memberChanged := full, full
	if full {
		picked := room.State{}
		for k, ref := range st {
			if rs.matches(k.Type, k.StateKey) {
				picked[k] = ref
			}
		}
		rs.addLazy(st, picked, evs)
		if stateEvs, err = s.rooms.StateEvents(ctx, picked); err != nil {
			return nil, entry, err
		}
	} else {
		changes, err := s.rooms.StateChangesBetween(ctx, m.RoomID, sent.pos, upto+1)
		if err != nil {
			return nil, entry, err
		}
		newest := map[room.StateKeyT]*room.Stored{}
		for _, ev := range changes {
			switch ev.Type {
			case "m.room.name", "m.room.avatar":
				nameChanged = true
			case "m.room.member":
				memberChanged = true
			}
			// With lazy members, a gapless delta carries every membership
			// change, so the client can keep its member list (MSC4186).
			if rs.matches(ev.Type, *ev.StateKey) || (rs.lazy && !limited && ev.Type == "m.room.member") {
				newest[ev.Key()] = ev
			}
		}
		lazy := room.State{}
		rs.addLazy(st, lazy, evs)
		for k, ref := range lazy {
			// The client has the member events it was sent (MSC4186
			// "Lazy loaded memberships").
			if _, changed := newest[k]; changed || sent.members[id.UserID(k.StateKey)] == ref.ID {
				delete(lazy, k)
			}
		}
		if stateEvs, err = s.rooms.StateEvents(ctx, lazy); err != nil {
			return nil, entry, err
		}
		for _, ev := range newest {
			stateEvs = append(stateEvs, ev)
		}
	}
	slices.SortFunc(stateEvs, func(a, b *room.Stored) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(*a.StateKey, *b.StateKey))
	})
	entry.members = sentMembers(entry.members, stateEvs, full)
	rr.RequiredState = s.rooms.FormatAll(ctx, stateEvs, b.viewer, false)

	if nameChanged {
		if err := s.nameAndAvatar(ctx, st, rr); err != nil {
			return nil, entry, err
		}
	}
	if memberChanged {
		if err := s.members(ctx, b, m.RoomID, st, rr); err != nil {
			return nil, entry, err
		}
	}
	if fresh || countsChanged || (rc != nil && rc.StreamPos > sent.pos) {
		setCounts(rr, rc)
	}
	rr.IsDM = entry.dm
	return rr, entry, nil
}

// setCounts sets the room's unread notification counts (over the main
// timeline and every thread, as /sync's unread_notifications without
// unread_thread_notifications); nil counts are zeros.
func setCounts(rr *RoomResp, rc *notifications.RoomCounts) {
	var n, h int
	if rc != nil {
		t := rc.Total()
		n, h = int(t.Notifications), int(t.Highlights)
	}
	rr.NotificationCount, rr.HighlightCount = &n, &h
}

// maxSentMembers bounds the member events remembered per room; past it
// the set starts again (and some are sent twice), so a big room's
// connection state stays small.
const maxSentMembers = 200

// sentMembers returns the member events the client holds after stateEvs:
// old (unless full replaces everything) plus those among stateEvs. old is
// shared with earlier states and never changed.
func sentMembers(old map[id.UserID]id.EventID, stateEvs []*room.Stored, full bool) map[id.UserID]id.EventID {
	var add []*room.Stored
	for _, ev := range stateEvs {
		if ev.Type == "m.room.member" {
			add = append(add, ev)
		}
	}
	if len(add) == 0 && !full {
		return old
	}
	out := make(map[id.UserID]id.EventID, len(old)+len(add))
	if !full && len(old)+len(add) <= maxSentMembers {
		maps.Copy(out, old)
	}
	for _, ev := range add {
		out[id.UserID(*ev.StateKey)] = ev.ID
	}
	return out
}

// timeline returns up to limit of the room's events in (after, upto]
// that the user may see, oldest first, and whether older ones were left
// out. The events of ignored users are left out, as in /sync.
func (s *Service) timeline(ctx context.Context, b *build, m room.Membership, after, upto int64, limit int) ([]*room.Stored, bool, error) {
	if limit == 0 {
		return nil, true, nil
	}
	page, err := s.rooms.Timeline(ctx, m.RoomID, room.Range{After: after, Before: upto + 1, Backwards: true, Limit: limit + 1})
	if err != nil {
		return nil, false, err
	}
	limited := len(page) > limit
	if limited {
		page = page[:limit]
	}
	slices.Reverse(page)
	if len(b.ignored) > 0 {
		page = slices.DeleteFunc(page, func(ev *room.Stored) bool { return !ev.IsState() && b.ignored[ev.Sender] })
	}
	page, err = s.sync.VisibleTimeline(ctx, b.user, m, page)
	return page, limited, err
}

// strippedRoom builds the entry of an invite or knock: the stripped state
// the user may see, with the room's name and avatar from it.
func (s *Service) strippedRoom(ctx context.Context, b *build, w *wanted) (*RoomResp, sentRoom, error) {
	m := w.c.m
	entry := sentRoom{pos: b.now, membership: m.Membership, state: w.stateConfig(), limit: w.limit}
	stripped, err := s.sync.InviteState(ctx, b.user, m)
	if err != nil {
		return nil, entry, err
	}
	rr := &RoomResp{Initial: true, BumpStamp: &w.c.stamp, Membership: m.Membership, Lists: w.lists}
	if m.Membership == "invite" {
		rr.InviteState = stripped
	} else {
		rr.KnockState = stripped
	}
	for _, ev := range stripped {
		switch {
		case ev.Type == "m.room.name" && ev.StateKey == "":
			rr.Name = gjson.GetBytes(ev.Content, "name").Str
		case ev.Type == "m.room.avatar" && ev.StateKey == "":
			if u := gjson.GetBytes(ev.Content, "url").Str; u != "" {
				rr.Avatar = &u
			}
		}
	}
	if rr.IsDM, err = s.isDM(ctx, b, w.c); err != nil {
		return nil, entry, err
	}
	entry.dm = rr.IsDM
	return rr, entry, nil
}

// nameAndAvatar sets the room's name and avatar from its state.
func (s *Service) nameAndAvatar(ctx context.Context, st room.State, rr *RoomResp) error {
	if ref, ok := st[room.StateKeyOf("m.room.name", "")]; ok {
		ev, err := s.rooms.Event(ctx, ref.ID)
		if err != nil {
			return err
		}
		rr.Name = gjson.GetBytes(ev.Content, "name").Str
	}
	if ref, ok := st[room.StateKeyOf("m.room.avatar", "")]; ok {
		ev, err := s.rooms.Event(ctx, ref.ID)
		if err != nil {
			return err
		}
		u := gjson.GetBytes(ev.Content, "url").Str
		rr.Avatar = &u
	}
	return nil
}

// members sets the member counts and, for a room without a name, the
// heroes with their profiles in the room.
func (s *Service) members(ctx context.Context, b *build, roomID id.RoomID, st room.State, rr *RoomResp) error {
	counts, heroes, err := s.rooms.MemberSummary(ctx, roomID, b.user, heroCount)
	if err != nil {
		return err
	}
	j, i := counts["join"], counts["invite"]
	rr.JoinedCount, rr.InvitedCount = &j, &i
	if _, named := st[room.StateKeyOf("m.room.name", "")]; named {
		return nil
	}
	for _, u := range heroes {
		h := Hero{UserID: u}
		if ref, ok := st[room.StateKeyOf("m.room.member", u.String())]; ok {
			if ev, err := s.rooms.Event(ctx, ref.ID); err == nil {
				h.DisplayName = gjson.GetBytes(ev.Content, "displayname").Str
				h.AvatarURL = gjson.GetBytes(ev.Content, "avatar_url").Str
			}
		}
		rr.Heroes = append(rr.Heroes, h)
	}
	return nil
}

// requiredState is a parsed required_state.
type requiredState struct {
	all bool
	// exclude holds what is left out of the matches.
	exclude *requiredState
	// types holds the types asked for with any key, keys the exact
	// (type, key) pairs, anyType the keys asked for with any type.
	types   map[string]bool
	keys    map[room.StateKeyT]bool
	anyType map[string]bool
	// lazy asks for the member events of the timeline's senders.
	lazy bool
}

// parseRequired reads [type, state_key] pairs: "*" is a wildcard, "$ME"
// the user, and ["m.room.member", "$LAZY"] the timeline senders' members;
// what exclude matches is left out.
func parseRequired(pairs, exclude [][]string, user id.UserID) requiredState {
	rs := parsePairs(pairs, user)
	if len(exclude) > 0 {
		ex := parsePairs(exclude, user)
		rs.exclude = &ex
	}
	return rs
}

func parsePairs(pairs [][]string, user id.UserID) requiredState {
	rs := requiredState{types: map[string]bool{}, keys: map[room.StateKeyT]bool{}, anyType: map[string]bool{}}
	for _, p := range pairs {
		typ, key := p[0], p[1]
		if key == "$ME" {
			key = user.String()
		}
		switch {
		case typ == "*" && key == "*":
			rs.all = true
		case typ == "m.room.member" && key == "$LAZY":
			rs.lazy = true
		case key == "*":
			rs.types[typ] = true
		case typ == "*":
			rs.anyType[key] = true
		default:
			rs.keys[room.StateKeyOf(typ, key)] = true
		}
	}
	return rs
}

func (rs *requiredState) matches(typ, key string) bool {
	if rs.exclude != nil && rs.exclude.matches(typ, key) {
		return false
	}
	return rs.all || rs.types[typ] || rs.anyType[key] || rs.keys[room.StateKeyOf(typ, key)]
}

// addLazy adds to picked the member events in st of the senders of evs
// and the targets of its member events, when lazy members were asked for.
func (rs *requiredState) addLazy(st, picked room.State, evs []*room.Stored) {
	if !rs.lazy {
		return
	}
	add := func(user string) {
		k := room.StateKeyOf("m.room.member", user)
		if ref, ok := st[k]; ok {
			picked[k] = ref
		}
	}
	for _, ev := range evs {
		add(ev.Sender.String())
		// The target of a member event too (MSC4186).
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			add(*ev.StateKey)
		}
	}
}
