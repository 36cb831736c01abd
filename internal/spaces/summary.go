package spaces

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/room"
)

// Join rules (m.room.join_rules) the visibility checks name.
const (
	rulePublic          = "public"
	ruleKnock           = "knock"
	ruleRestricted      = "restricted"
	ruleKnockRestricted = "knock_restricted"
)

// maxChildren caps the children considered per space, as Synapse does
// (MAX_ROOMS_PER_SPACE): a space with thousands of children must not make
// one request walk them all.
const maxChildren = 50

// local is a room this server is in, read from its current state.
type local struct {
	Summary
	version  id.RoomVersion
	isSpace  bool
	children []ChildEvent
	// state is the current state the summary was read from, for member
	// lookups.
	state room.State
}

// MarshalJSON writes the content as the sender set it.
func (b childBody) MarshalJSON() ([]byte, error) {
	if b.Raw == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(b.Raw)
}

// UnmarshalJSON reads any JSON object; via, order and suggested are taken
// only when they have the spec's types (a child without a valid via is no
// child at all).
func (b *childBody) UnmarshalJSON(data []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*b = parseChildBody(raw)
	return nil
}

func parseChildBody(raw map[string]any) childBody {
	b := childBody{Raw: raw}
	if via, ok := raw["via"].([]any); ok {
		for _, v := range via {
			s, ok := v.(string)
			if !ok {
				b.Via = nil
				break
			}
			b.Via = append(b.Via, s)
		}
	}
	if o, ok := raw["order"].(string); ok && validOrder(o) {
		b.Order = o
	}
	b.Suggested, _ = raw["suggested"].(bool)
	return b
}

// validOrder: an order is at most 50 characters between U+0020 and U+007E
// (m.space.child).
func validOrder(o string) bool {
	if len(o) > 50 {
		return false
	}
	for i := 0; i < len(o); i++ {
		if o[i] < 0x20 || o[i] > 0x7e {
			return false
		}
	}
	return true
}

// sortChildren orders children as the spec's "Ordering of children within
// a space" says: those with a valid order first, by order; then by
// origin_server_ts; then by room ID.
func sortChildren(cs []ChildEvent) {
	slices.SortStableFunc(cs, func(a, b ChildEvent) int {
		ao, bo := a.Content.Order != "", b.Content.Order != ""
		switch {
		case ao && !bo:
			return -1
		case bo && !ao:
			return 1
		}
		if c := strings.Compare(a.Content.Order, b.Content.Order); c != 0 {
			return c
		}
		if a.OriginServerTS != b.OriginServerTS {
			if a.OriginServerTS < b.OriginServerTS {
				return -1
			}
			return 1
		}
		return strings.Compare(a.StateKey, b.StateKey)
	})
}

// validChildren keeps the children with a non-empty via that are room
// IDs, suggested ones only when asked, in the spec's order, at most
// maxChildren.
func validChildren(cs []ChildEvent, suggestedOnly bool) []ChildEvent {
	out := make([]ChildEvent, 0, len(cs))
	for _, c := range cs {
		if c.Type != "m.space.child" || len(c.Content.Via) == 0 || !strings.HasPrefix(c.StateKey, "!") {
			continue
		}
		if suggestedOnly && !c.Content.Suggested {
			continue
		}
		out = append(out, c)
	}
	sortChildren(out)
	if len(out) > maxChildren {
		out = out[:maxChildren]
	}
	return out
}

// inRoom reports whether this server is in the room: only then is its
// state current enough to describe it.
func (s *Service) inRoom(ctx context.Context, roomID id.RoomID) (bool, error) {
	return s.rooms.ServerInRoom(ctx, roomID, s.serverName)
}

// loadLocal reads the summary of a room this server is in.
func (s *Service) loadLocal(ctx context.Context, roomID id.RoomID) (*local, error) {
	version, err := s.rooms.Version(ctx, roomID)
	if err != nil {
		return nil, err
	}
	st, err := s.rooms.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	l := &local{Summary: Summary{PublicRoom: room.PublicRoom{RoomID: roomID}, RoomVersion: string(version)}, version: version, state: st}
	content := func(evType string) map[string]any {
		ref, ok := st[room.StateKeyOf(evType, "")]
		if !ok {
			return nil
		}
		ev, err := s.rooms.Event(ctx, ref.ID)
		if err != nil {
			return nil
		}
		var c map[string]any
		if json.Unmarshal(ev.Content, &c) != nil {
			return nil
		}
		return c
	}
	str := func(c map[string]any, key string) string {
		v, _ := c[key].(string)
		return v
	}
	l.Name = str(content("m.room.name"), "name")
	l.Topic = str(content("m.room.topic"), "topic")
	l.CanonicalAlias = id.RoomAlias(str(content("m.room.canonical_alias"), "alias"))
	l.AvatarURL = str(content("m.room.avatar"), "url")
	l.RoomType = str(content("m.room.create"), "type")
	l.isSpace = l.RoomType == "m.space"
	l.WorldReadable = str(content("m.room.history_visibility"), "history_visibility") == "world_readable"
	l.GuestCanJoin = str(content("m.room.guest_access"), "guest_access") == "can_join"
	l.Encryption = str(content("m.room.encryption"), "algorithm")
	jr := content("m.room.join_rules")
	l.JoinRule = str(jr, "join_rule")
	if l.JoinRule == "" {
		// No join rules event: the auth rules treat the room as invite-only.
		l.JoinRule = "invite"
	}
	if (l.JoinRule == ruleRestricted && version.RestrictedJoins()) || (l.JoinRule == ruleKnockRestricted && version.KnockRestricted()) {
		allow, _ := jr["allow"].([]any)
		for _, a := range allow {
			m, _ := a.(map[string]any)
			if t, _ := m["type"].(string); t != "m.room_membership" {
				continue
			}
			if rid, _ := m["room_id"].(string); strings.HasPrefix(rid, "!") {
				l.AllowedRoomIDs = append(l.AllowedRoomIDs, id.RoomID(rid))
			}
		}
	}
	counts, _, err := s.rooms.MemberSummary(ctx, roomID, "", 0)
	if err != nil {
		return nil, err
	}
	l.NumJoinedMembers = counts["join"]
	if l.isSpace {
		for k, ref := range st {
			if k.Type != "m.space.child" {
				continue
			}
			ev, err := s.rooms.Event(ctx, ref.ID)
			if err != nil {
				return nil, fmt.Errorf("reading child %s of %s: %w", k.StateKey, roomID, err)
			}
			var raw map[string]any
			if json.Unmarshal(ev.Content, &raw) != nil {
				continue
			}
			l.children = append(l.children, ChildEvent{
				Type: k.Type, StateKey: k.StateKey, Content: parseChildBody(raw),
				Sender: ev.Sender, OriginServerTS: ev.OriginServerTS,
			})
		}
	}
	return l, nil
}

// entry is the room's hierarchy entry; the children of a space are its
// valid m.space.child events.
func (l *local) entry(suggestedOnly bool) (Entry, []ChildEvent) {
	children := validChildren(l.children, suggestedOnly)
	// children_state lists every child event of the space, suggested or not
	// only as the filter says, the same set the walk follows.
	return Entry{Summary: l.Summary, ChildrenState: children}, children
}

// open reports whether anyone may be shown the room: it is world-readable,
// public, or knockable in a room version with knocking.
func open(sum Summary, version id.RoomVersion) bool {
	if sum.WorldReadable {
		return true
	}
	switch sum.JoinRule {
	case rulePublic:
		return true
	case ruleKnock:
		// A remote summary carries its version since v1.15; without one,
		// assume knocking works, as Synapse does.
		return version == "" || version.Knocks()
	case ruleKnockRestricted:
		return version == "" || version.KnockRestricted()
	}
	return false
}

// membership returns user's membership in a local room ("" if none).
func (s *Service) membership(ctx context.Context, l *local, user id.UserID) (string, error) {
	ref, ok := l.state[room.StateKeyOf("m.room.member", user.String())]
	if !ok {
		return "", nil
	}
	ev, err := s.rooms.Event(ctx, ref.ID)
	if err != nil {
		return "", err
	}
	return ev.Membership(), nil
}

// joinedAny reports whether user is joined to one of rooms here.
func (s *Service) joinedAny(ctx context.Context, user id.UserID, rooms []id.RoomID) (bool, error) {
	for _, r := range rooms {
		m, _, ok, err := s.rooms.LocalMembership(ctx, user, r)
		if err != nil {
			return false, err
		}
		if ok && m.Membership == "join" {
			return true, nil
		}
	}
	return false, nil
}

// userMaySee applies the hierarchy's visibility rules to a local room for
// user ("" for an unauthenticated caller): joined or invited, the room
// open to all, or restricted to a room user is joined to.
func (s *Service) userMaySee(ctx context.Context, l *local, user id.UserID) (bool, error) {
	if open(l.Summary, l.version) {
		return true, nil
	}
	if user == "" {
		return false, nil
	}
	m, err := s.membership(ctx, l, user)
	if err != nil {
		return false, err
	}
	if m == "join" || m == "invite" {
		return true, nil
	}
	if m == "ban" {
		return false, nil
	}
	return s.joinedAny(ctx, user, l.AllowedRoomIDs)
}

// serverMaySee applies the rules to a requesting server: the room is open,
// the server is in it or has a user invited to it, or it is in a room that
// a restricted room allows (the requesting server then filters for its
// user).
func (s *Service) serverMaySee(ctx context.Context, l *local, origin string) (bool, error) {
	if open(l.Summary, l.version) {
		return true, nil
	}
	if ok, err := s.rooms.ServerInRoom(ctx, l.RoomID, origin); err != nil || ok {
		return ok, err
	}
	for k, ref := range l.state {
		if k.Type != "m.room.member" || id.UserID(k.StateKey).Homeserver() != origin {
			continue
		}
		ev, err := s.rooms.Event(ctx, ref.ID)
		if err != nil {
			return false, err
		}
		if ev.Membership() == "invite" {
			return true, nil
		}
	}
	for _, r := range l.AllowedRoomIDs {
		if ok, err := s.rooms.ServerInRoom(ctx, r, origin); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}
