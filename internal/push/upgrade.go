package push

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"
)

// CopyRoomRules gives user, for the room to, a copy of each of their own
// rules that names the room from: the room rule whose ID is from, and
// override and underride rules with an event_match condition on room_id
// whose pattern is exactly from (the rules clients make to mute or
// highlight one room). The copy's rule ID has from replaced by to. A room
// upgrade calls it for each local member, as Synapse does, so that the
// member's notification settings follow them to the new room. Rules
// already present under the new ID are left as they are.
func (s *Service) CopyRoomRules(ctx context.Context, user id.UserID, from, to id.RoomID) error {
	rules, err := s.Rules(ctx, user)
	if err != nil {
		return err
	}
	// Most members have no rule about the room: skip the write.
	found := false
	for _, k := range []Kind{Override, Room, Underride} {
		found = found || slices.ContainsFunc(rules.Of(k), func(r Rule) bool { return !r.Default && namesRoom(r, k, from) })
	}
	if !found {
		return nil
	}
	return s.change(ctx, user, func(u *userRules) error {
		for _, k := range []Kind{Override, Room, Underride} {
			var copies []Rule
			for _, r := range u.Rules[k] {
				if !namesRoom(r, k, from) {
					continue
				}
				c := r
				c.RuleID = strings.ReplaceAll(r.RuleID, from.String(), to.String())
				if slices.ContainsFunc(u.Rules[k], func(o Rule) bool { return o.RuleID == c.RuleID }) {
					continue
				}
				c.Conditions = nil
				if r.Conditions != nil {
					c.Conditions = make([]json.RawMessage, len(r.Conditions))
					for i, cond := range r.Conditions {
						c.Conditions[i] = retarget(cond, from, to)
					}
				}
				copies = append(copies, c)
			}
			if len(copies) > 0 {
				if u.Rules == nil {
					u.Rules = map[Kind][]Rule{}
				}
				// The copies rank just above the rules they copy, in
				// the same order.
				u.Rules[k] = append(copies, u.Rules[k]...)
			}
		}
		return nil
	})
}

// namesRoom reports whether the user-defined rule r of kind k is about the
// room: a room rule with the room's ID, or a rule with an event_match
// condition on room_id matching exactly the room's ID.
func namesRoom(r Rule, k Kind, room id.RoomID) bool {
	if k == Room {
		return r.RuleID == room.String()
	}
	for _, raw := range r.Conditions {
		var c condition
		if json.Unmarshal(raw, &c) == nil && c.Kind == "event_match" && c.Key != nil && *c.Key == "room_id" && c.Pattern != nil && *c.Pattern == room.String() {
			return true
		}
	}
	return false
}

// retarget returns the condition cond with an event_match on room_id
// pointing at to instead of from; other conditions are returned unchanged.
func retarget(cond json.RawMessage, from, to id.RoomID) json.RawMessage {
	var c map[string]json.RawMessage
	if json.Unmarshal(cond, &c) != nil {
		return cond
	}
	var kind, key, pattern string
	_ = json.Unmarshal(c["kind"], &kind)
	_ = json.Unmarshal(c["key"], &key)
	_ = json.Unmarshal(c["pattern"], &pattern)
	if kind != "event_match" || key != "room_id" || pattern != from.String() {
		return cond
	}
	c["pattern"], _ = json.Marshal(to.String())
	out, err := json.Marshal(c)
	if err != nil {
		return cond
	}
	return out
}
