package upgrade

import (
	"encoding/json"
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
)

// initialEvents returns the new room's events in the order Synapse sends
// them: create, the user's join, power levels, canonical alias, join
// rules, history visibility, guest access, then the rest of the copied
// state, the space's children and the bans; last, if the user's level had
// to be raised to send all that, the power levels with their own level
// restored.
func (s *Service) initialEvents(req Request, old *oldState, predecessor map[string]any) ([]pdu.Proto, error) {
	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	state := func(typ, key string, content json.RawMessage) pdu.Proto {
		return stateProto(req.User, typ, key, content, "")
	}

	// 2. The create event.
	create := map[string]any{"room_version": req.Version, "predecessor": predecessor}
	if req.Version.CreatorInContent() {
		create["creator"] = req.User
	}
	if t, ok := old.create["type"]; ok {
		create["type"] = t
	}
	if f, ok := old.create["m.federate"]; ok && string(f) == "false" {
		create["m.federate"] = false
	}
	if len(req.AdditionalCreators) > 0 {
		create["additional_creators"] = req.AdditionalCreators
	}
	protos := []pdu.Proto{
		state("m.room.create", "", raw(create)),
		state("m.room.member", req.User.String(), req.JoinContent),
	}

	pl, restore := newPowerLevels(req, old)
	protos = append(protos, state("m.room.power_levels", "", raw(pl)))
	if c, ok := old.byType["m.room.canonical_alias"]; ok {
		protos = append(protos, state("m.room.canonical_alias", "", c))
	}
	for _, t := range copied {
		if c, ok := old.byType[t]; ok {
			protos = append(protos, state(t, "", c))
		}
	}
	// The children of a space are copied; removed ones (empty content)
	// are not (Synapse).
	if t, ok := old.create["type"]; ok && string(t) == `"m.space"` {
		for _, k := range slices.Sorted(maps.Keys(old.children)) {
			c := old.children[k]
			var m map[string]json.RawMessage
			if json.Unmarshal(c, &m) == nil && len(m) > 0 {
				protos = append(protos, state("m.space.child", k, c))
			}
		}
	}
	creators := append([]id.UserID{req.User}, req.AdditionalCreators...)
	for _, u := range old.bans {
		// A ban the auth rules would refuse (a creator, or a user at
		// the upgrader's level) would fail the whole room: skip it.
		if slices.Contains(creators, u) || (!req.Version.PrivilegedRoomCreators() && levelOf(pl, u) >= levelOf(pl, req.User)) {
			continue
		}
		protos = append(protos, state("m.room.member", u.String(), raw(map[string]string{"membership": "ban"})))
	}
	if restore != nil {
		protos = append(protos, state("m.room.power_levels", "", raw(restore)))
	}
	return protos, nil
}

// newPowerLevels returns the new room's power levels: the old room's,
// with the user raised (if needed) to the highest level any event in it
// needs, so that every copied event is allowed; in that case restore is
// the same levels with the user's own level put back, sent last
// (Synapse). In a room with privileged creators (v12) the creators are
// removed from users instead: they have no level, and the auth rules
// refuse one.
func newPowerLevels(req Request, old *oldState) (pl, restore map[string]json.RawMessage) {
	pl = map[string]json.RawMessage{}
	if c, ok := old.byType["m.room.power_levels"]; ok {
		_ = json.Unmarshal(c, &pl)
	}
	users := map[string]json.RawMessage{}
	if u, ok := pl["users"]; ok {
		_ = json.Unmarshal(u, &users)
	}
	setUsers := func(m map[string]json.RawMessage, users map[string]json.RawMessage) {
		m["users"], _ = json.Marshal(users)
	}
	if req.Version.PrivilegedRoomCreators() {
		delete(users, req.User.String())
		for _, c := range req.AdditionalCreators {
			delete(users, c.String())
		}
		setUsers(pl, users)
		return pl, nil
	}
	needed := max(intField(pl, "state_default", 50), intField(pl, "ban", 50))
	var events map[string]json.RawMessage
	if e, ok := pl["events"]; ok {
		_ = json.Unmarshal(e, &events)
	}
	for _, v := range events {
		var n int
		if json.Unmarshal(v, &n) == nil {
			needed = max(needed, n)
		}
	}
	current, had := 0, false
	if v, ok := users[req.User.String()]; ok {
		had = json.Unmarshal(v, &current) == nil
	}
	if !had {
		current = intField(pl, "users_default", 0)
	}
	if current >= needed {
		return pl, nil
	}
	restore = maps.Clone(pl)
	raised := maps.Clone(users)
	raised[req.User.String()], _ = json.Marshal(needed)
	setUsers(pl, raised)
	if !had && len(users) == 0 {
		delete(restore, "users")
	}
	return pl, restore
}

// intField reads an integer power level field, with its default.
func intField(m map[string]json.RawMessage, key string, def int) int {
	var n int
	if v, ok := m[key]; ok && json.Unmarshal(v, &n) == nil {
		return n
	}
	return def
}

// levelOf is the user's level under the power levels content pl.
func levelOf(pl map[string]json.RawMessage, user id.UserID) int {
	var users map[string]int
	if u, ok := pl["users"]; ok {
		_ = json.Unmarshal(u, &users)
	}
	if n, ok := users[user.String()]; ok {
		return n
	}
	return intField(pl, "users_default", 0)
}
