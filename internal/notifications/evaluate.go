package notifications

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/relations"
	"github.com/myelin-chat/myelin/internal/room"
)

// roomInfo is what evaluating an event in a room needs of its current
// state, shared by every event until the state changes. Immutable.
type roomInfo struct {
	// joined is the number of joined members, local or not.
	joined int
	// local maps each local joined member to their display name there.
	local map[id.UserID]string
	pl    *event.PowerLevelsEventContent
	// notifPower is the power levels' notifications object.
	notifPower map[string]int64
}

// maxCachedRooms bounds the room cache; past it the cache starts over.
const maxCachedRooms = 10_000

// roomInfo returns the room's cached info, loading it on a miss.
func (s *Service) roomInfo(ctx context.Context, roomID id.RoomID) (*roomInfo, error) {
	s.mu.Lock()
	ri, g := s.cache[roomID], s.gens[roomID]
	s.mu.Unlock()
	if ri != nil {
		return ri, nil
	}
	ri, err := s.loadRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.gens[roomID] == g {
		if len(s.cache) >= maxCachedRooms {
			clear(s.cache)
		}
		s.cache[roomID] = ri
	}
	s.mu.Unlock()
	return ri, nil
}

// loadRoom reads the room's joined members, the local ones' display
// names, and its power levels from the current state.
func (s *Service) loadRoom(ctx context.Context, roomID id.RoomID) (*roomInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT cs.state_key, e.json FROM current_state cs
		JOIN events e ON e.event_nid = cs.event_nid
		WHERE cs.room_id = $1 AND cs.type = 'm.room.member' AND cs.membership = 'join'`, roomID.String())
	if err != nil {
		return nil, fmt.Errorf("loading the members of %s: %w", roomID, err)
	}
	defer rows.Close()
	ri := &roomInfo{local: map[id.UserID]string{}}
	server := s.server
	for rows.Next() {
		var user string
		var raw []byte
		if err := rows.Scan(&user, &raw); err != nil {
			return nil, fmt.Errorf("loading the members of %s: %w", roomID, err)
		}
		ri.joined++
		if u := id.UserID(user); u.Homeserver() == server {
			ri.local[u] = gjson.GetBytes(raw, "content.displayname").Str
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading the members of %s: %w", roomID, err)
	}
	if ri.pl, err = s.rooms.PowerLevels(ctx, roomID); err != nil {
		return nil, err
	}
	if ri.pl.Notifications != nil && ri.pl.Notifications.RoomPtr != nil {
		ri.notifPower = map[string]int64{"room": int64(*ri.pl.Notifications.RoomPtr)}
	}
	return ri, nil
}

// power is the sender's power level; room creators of room versions
// where they outrank every level have the largest.
func (ri *roomInfo) power(sender id.UserID) int64 {
	l := ri.pl.GetUserLevel(sender)
	if l == math.MaxInt {
		return math.MaxInt64
	}
	return int64(l)
}

// pending is one notification decided, not yet stored.
type pending struct {
	user      id.UserID
	ev        *room.Stored
	thread    string
	actions   []json.RawMessage
	highlight bool
}

// mark is a read mark: the user has read their notifications in the room
// up to pos, in thread ("" for every thread).
type mark struct {
	user   id.UserID
	room   id.RoomID
	thread string
	pos    int64
}

// evaluateEvent runs every local member's rules (the sender's excepted)
// against ev, and returns the notifications they ask for and, for an
// event of a local member, the read mark it sets for its sender (spec
// "Marking notifications as read": sending an event marks what precedes
// it read, in the event's thread).
func (s *Service) evaluateEvent(ctx context.Context, ev *room.Stored) ([]pending, *mark, error) {
	roomID := ev.RoomID()
	ri, err := s.roomInfo(ctx, roomID)
	if err != nil {
		return nil, nil, err
	}
	thread, err := s.threadOf(ctx, ev)
	if err != nil {
		return nil, nil, err
	}
	var own *mark
	if _, ok := ri.local[ev.Sender]; ok {
		own = &mark{user: ev.Sender, room: roomID, thread: thread, pos: ev.StreamPos}
	}
	pe, err := push.NewEvent(ev.JSON())
	if err != nil {
		return nil, own, nil // not an object: nothing to match
	}
	rc := push.RoomContext{MemberCount: ri.joined, SenderPower: ri.power(ev.Sender), NotificationPower: ri.notifPower}
	var out []pending
	try := func(user id.UserID, displayName string) error {
		if user == ev.Sender {
			return nil
		}
		c, err := s.rules.Compiled(ctx, user)
		if err != nil {
			return err
		}
		if res := c.Evaluate(pe, rc, displayName); res.Notify {
			out = append(out, pending{user: user, ev: ev, thread: thread, actions: res.Actions, highlight: res.Highlight})
		}
		return nil
	}
	for user, dn := range ri.local {
		if err := try(user, dn); err != nil {
			return nil, nil, err
		}
	}
	// An invite of a local user is evaluated for the invitee too (the
	// default .m.rule.invite_for_me), as Synapse does.
	if ev.Type == "m.room.member" && ev.StateKey != nil && ev.Membership() == "invite" {
		invitee := id.UserID(*ev.StateKey)
		if _, joined := ri.local[invitee]; !joined && invitee.Homeserver() == s.server {
			if err := try(invitee, ""); err != nil {
				return nil, nil, err
			}
		}
	}
	return out, own, nil
}

// threadOf returns the thread ev is in: "main", or its thread root.
func (s *Service) threadOf(ctx context.Context, ev *room.Stored) (string, error) {
	rel := gjson.GetBytes(ev.Content, `m\.relates_to`)
	if !rel.IsObject() {
		return "main", nil
	}
	parent := rel.Get("event_id").Str
	if parent == "" {
		return "main", nil
	}
	if rel.Get("rel_type").Str == "m.thread" {
		return parent, nil
	}
	if s.rels == nil {
		return "main", nil
	}
	// The event is the first hop of the spec's recommended three.
	return s.rels.ThreadOf(ctx, id.EventID(parent), relations.MaxDepth-1)
}

// clientJSON renders ev in client format for the push gateway.
func clientJSON(ev *room.Stored) json.RawMessage {
	m := map[string]any{
		"event_id": ev.ID, "room_id": ev.RoomID(), "type": ev.Type, "sender": ev.Sender,
		"content": json.RawMessage(ev.Content), "origin_server_ts": ev.OriginServerTS,
	}
	if ev.StateKey != nil {
		m["state_key"] = *ev.StateKey
	}
	raw, _ := json.Marshal(m)
	return raw
}

// tweaks collects the set_tweak actions as the gateway's tweaks object.
func tweaks(actions []json.RawMessage) map[string]any {
	out := map[string]any{}
	for _, a := range actions {
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) != nil || t.SetTweak == "" {
			continue
		}
		var v any = true // a tweak without a value (highlight) is true
		if len(t.Value) > 0 {
			_ = json.Unmarshal(t.Value, &v)
		}
		out[t.SetTweak] = v
	}
	return out
}
