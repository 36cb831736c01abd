package slidingsync

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// candidate is a room a list may show: one the user is joined to, invited
// to, knocking on, banned from, or has just left.
type candidate struct {
	m room.Membership
	// stamp orders the lists (newest first): for a joined room the
	// position of its newest bump event, for the others the user's
	// membership change, which is the last the user may see of the room.
	stamp int64
}

// candidates returns the rooms lists choose from, newest first: joins,
// invites, knocks and bans, and rooms left (MSC4186 "Lists") if the
// connection was sent them before, or the user was kicked (they may not
// have seen it otherwise); a room the user left themselves is not worth
// the bandwidth.
func (s *Service) candidates(ctx context.Context, b *build) ([]candidate, error) {
	joined := make([]id.RoomID, 0, len(b.memberships))
	for _, m := range b.memberships {
		if m.Membership == "join" && m.StreamPos <= b.now {
			joined = append(joined, m.RoomID)
		}
	}
	bumps, err := s.bumps.Positions(ctx, joined)
	if err != nil {
		return nil, err
	}
	out := make([]candidate, 0, len(b.memberships))
	next := 0 // index into joined and bumps, in the same order as memberships
	for _, m := range b.memberships {
		if m.StreamPos > b.now {
			continue
		}
		c := candidate{m: m, stamp: m.StreamPos}
		switch m.Membership {
		case "join":
			if p := bumps[next]; p > 0 {
				c.stamp = p
			}
			next++
		case "invite":
			if hidden, err := s.sync.InviteIgnored(ctx, b.user, b.ignored, m); err != nil {
				return nil, err
			} else if hidden {
				continue
			}
		case "knock", "ban":
		case "leave":
			if _, sent := b.base.rooms[m.RoomID]; !sent {
				kicked, err := s.kicked(ctx, b.user, m)
				if err != nil {
					return nil, err
				}
				if !kicked {
					continue
				}
			}
		default:
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b candidate) int {
		if a.stamp != b.stamp {
			if a.stamp > b.stamp {
				return -1
			}
			return 1
		}
		return strings.Compare(string(a.m.RoomID), string(b.m.RoomID))
	})
	return out, nil
}

// kicked reports whether a leave was someone else's doing (a kick, or a
// rejected knock or withdrawn invite): the sender of an event never
// changes, so the answer is cached by event.
func (s *Service) kicked(ctx context.Context, user id.UserID, m room.Membership) (bool, error) {
	if sender, ok := s.leaveSenders.Get(m.EventID); ok {
		return sender != user, nil
	}
	ev, err := s.rooms.Event(ctx, m.EventID)
	if errors.Is(err, mxerr.NotFound) {
		return false, nil // a remote invite rejected: the user's own doing
	}
	if err != nil {
		return false, err
	}
	s.leaveSenders.Add(m.EventID, ev.Sender)
	return ev.Sender != user, nil
}

// facts are what filters ask of a room, loaded once per build and only
// for the filters a request uses.
type facts struct {
	direct    map[id.RoomID]bool               // rooms in m.direct
	tags      map[id.RoomID]map[string]bool    // m.tag of each room
	children  map[id.RoomID]map[id.RoomID]bool // space → its children
	encrypted map[id.RoomID]bool
	roomType  map[id.RoomID]*string
}

// accountEntries reads the user's account data once per build: m.direct
// and m.tag come from it.
func (s *Service) accountEntries(ctx context.Context, b *build) ([]accountdata.Entry, error) {
	if b.allAccountData == nil {
		entries, err := s.accountData.Since(ctx, b.user, -1, b.now)
		if err != nil {
			return nil, err
		}
		b.allAccountData = &entries
	}
	return *b.allAccountData, nil
}

// isDM reports whether the room is a direct chat: listed in m.direct, or an
// invite marked is_direct.
func (s *Service) isDM(ctx context.Context, b *build, c candidate) (bool, error) {
	if b.facts.direct == nil {
		b.facts.direct = map[id.RoomID]bool{}
		entries, err := s.accountEntries(ctx, b)
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			if e.RoomID != "" || e.Type != "m.direct" {
				continue
			}
			var direct map[string][]id.RoomID
			_ = json.Unmarshal(e.Content, &direct)
			for _, rooms := range direct {
				for _, r := range rooms {
					b.facts.direct[r] = true
				}
			}
		}
	}
	if b.facts.direct[c.m.RoomID] {
		return true, nil
	}
	if c.m.Membership == "invite" {
		ev, err := s.rooms.Event(ctx, c.m.EventID)
		if err == nil && ev != nil {
			return gjson.GetBytes(ev.Content, "is_direct").Bool(), nil
		}
		if err != nil && !errors.Is(err, mxerr.NotFound) {
			return false, err
		}
		if inv, err := s.rooms.RemoteInviteFor(ctx, b.user, c.m.RoomID); err == nil && inv != nil {
			return gjson.GetBytes(inv.Event.Content, "is_direct").Bool(), nil
		}
	}
	return false, nil
}

// stateFact returns a state event's content from the room's current state,
// or from the stripped state of an invite or knock ("" when unset).
func (s *Service) stateFact(ctx context.Context, b *build, c candidate, evType string) (json.RawMessage, bool, error) {
	switch c.m.Membership {
	case "invite", "knock":
		stripped, err := s.sync.InviteState(ctx, b.user, c.m)
		if err != nil {
			return nil, false, err
		}
		for _, ev := range stripped {
			if ev.Type == evType && ev.StateKey == "" {
				return ev.Content, true, nil
			}
		}
		return nil, false, nil
	}
	ev, err := s.rooms.CurrentStateEvent(ctx, c.m.RoomID, evType, "")
	if err != nil || ev == nil {
		if errors.Is(err, mxerr.NotFound) {
			err = nil
		}
		return nil, false, err
	}
	return json.RawMessage(ev.Content), true, nil
}

// match reports whether the room passes every filter set.
func (s *Service) match(ctx context.Context, b *build, f *Filters, c candidate) (bool, error) {
	if f == nil {
		return true, nil
	}
	if f.IsInvite != nil && *f.IsInvite != (c.m.Membership == "invite") {
		return false, nil
	}
	if f.IsDM != nil {
		dm, err := s.isDM(ctx, b, c)
		if err != nil || dm != *f.IsDM {
			return false, err
		}
	}
	if f.IsEncrypted != nil {
		enc, ok := b.facts.encrypted[c.m.RoomID]
		if !ok && c.m.Membership == "join" {
			// Encryption cannot be turned off: once seen, it holds.
			_, ok = s.encryptedRooms.Get(c.m.RoomID)
			enc = ok
		}
		if !ok {
			_, has, err := s.stateFact(ctx, b, c, "m.room.encryption")
			if err != nil {
				return false, err
			}
			enc = has
			b.facts.encrypted[c.m.RoomID] = enc
			if has && c.m.Membership == "join" {
				s.encryptedRooms.Add(c.m.RoomID, struct{}{})
			}
		}
		if enc != *f.IsEncrypted {
			return false, nil
		}
	}
	if f.RoomTypes != nil || f.NotRoomTypes != nil {
		t, ok := b.facts.roomType[c.m.RoomID]
		if !ok && c.m.Membership == "join" {
			// The create event never changes.
			t, ok = s.roomTypes.Get(c.m.RoomID)
		}
		if !ok {
			content, _, err := s.stateFact(ctx, b, c, "m.room.create")
			if err != nil {
				return false, err
			}
			if v := gjson.GetBytes(content, "type"); v.Type == gjson.String {
				t = &v.Str
			}
			b.facts.roomType[c.m.RoomID] = t
			if c.m.Membership == "join" {
				s.roomTypes.Add(c.m.RoomID, t)
			}
		}
		in := func(list []*string) bool {
			return slices.ContainsFunc(list, func(x *string) bool { return (x == nil && t == nil) || (x != nil && t != nil && *x == *t) })
		}
		if in(f.NotRoomTypes) || (f.RoomTypes != nil && !in(f.RoomTypes)) {
			return false, nil
		}
	}
	if len(f.Spaces) > 0 {
		ok := false
		for _, space := range f.Spaces {
			children, err := s.spaceChildren(ctx, b, space)
			if err != nil {
				return false, err
			}
			if children[c.m.RoomID] {
				ok = true
				break
			}
		}
		if !ok {
			return false, nil
		}
	}
	if f.Tags != nil || f.NotTags != nil {
		tags, err := s.roomTags(ctx, b, c.m.RoomID)
		if err != nil {
			return false, err
		}
		for _, t := range f.NotTags {
			if tags[t] {
				return false, nil
			}
		}
		if len(f.Tags) > 0 && !slices.ContainsFunc(f.Tags, func(t string) bool { return tags[t] }) {
			return false, nil
		}
	}
	return true, nil
}

// spaceChildren returns the rooms a space the user is joined to names as
// children (m.space.child events with a via list, as Synapse counts them).
func (s *Service) spaceChildren(ctx context.Context, b *build, space id.RoomID) (map[id.RoomID]bool, error) {
	if c, ok := b.facts.children[space]; ok {
		return c, nil
	}
	out := map[id.RoomID]bool{}
	b.facts.children[space] = out
	if !slices.ContainsFunc(b.memberships, func(m room.Membership) bool { return m.RoomID == space && m.Membership == "join" }) {
		return out, nil
	}
	st, err := s.rooms.CurrentState(ctx, space)
	if err != nil {
		return nil, err
	}
	var refs room.State = room.State{}
	for k, ref := range st {
		if k.Type == "m.space.child" {
			refs[k] = ref
		}
	}
	evs, err := s.rooms.StateEvents(ctx, refs)
	if err != nil {
		return nil, err
	}
	for _, ev := range evs {
		if via := gjson.GetBytes(ev.Content, "via"); via.IsArray() && len(via.Array()) > 0 {
			out[id.RoomID(*ev.StateKey)] = true
		}
	}
	return out, nil
}

// roomTags returns the tags of the room's m.tag account data.
func (s *Service) roomTags(ctx context.Context, b *build, roomID id.RoomID) (map[string]bool, error) {
	if b.facts.tags == nil {
		b.facts.tags = map[id.RoomID]map[string]bool{}
		entries, err := s.accountEntries(ctx, b)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.RoomID == "" || e.Type != "m.tag" {
				continue
			}
			tags := map[string]bool{}
			gjson.GetBytes(e.Content, "tags").ForEach(func(k, _ gjson.Result) bool {
				tags[k.Str] = true
				return true
			})
			b.facts.tags[e.RoomID] = tags
		}
	}
	return b.facts.tags[roomID], nil
}

// windows applies each list's filters to the candidates and collects the
// rooms of its ranges with the details they are wanted with.
func (s *Service) windows(ctx context.Context, b *build, cands []candidate, resp *Resp) error {
	for name, l := range b.lists {
		var filtered []candidate
		if l.Filters == nil {
			filtered = cands
		} else {
			for _, c := range cands {
				ok, err := s.match(ctx, b, l.Filters, c)
				if err != nil {
					return err
				}
				if ok {
					filtered = append(filtered, c)
				}
			}
		}
		resp.Lists[name] = ListResp{Count: len(filtered)}
		b.next.counts[name] = len(filtered)
		for _, rg := range l.Ranges {
			for i := rg[0]; i <= rg[1] && i < int64(len(filtered)); i++ {
				b.want(filtered[i], l.RoomDetails, name)
			}
		}
	}
	return nil
}
