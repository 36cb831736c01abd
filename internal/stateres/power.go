package stateres

import (
	"math"
	"strconv"
	"strings"

	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/tidwall/gjson"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

const (
	typeCreate      = "m.room.create"
	typePowerLevels = "m.room.power_levels"
	typeJoinRules   = "m.room.join_rules"
	typeMember      = "m.room.member"
)

// infinitePower is the power level of v12 room creators.
const infinitePower = math.MaxInt64

// isPowerEvent reports whether e is a power event: power levels, join rules,
// or a member event with membership leave or ban sent by someone other than
// its target.
//
// Like Synapse and Ruma, it requires an empty state_key for power levels
// and join rules (only those take part in authorisation) and counts the
// create event too; a create event is in every auth chain, so it can only be
// in the full conflicted set of a room with two of them.
func isPowerEvent(e *pdu.Event) bool {
	if e.StateKey == nil {
		return false
	}
	switch e.Type {
	case typePowerLevels, typeJoinRules, typeCreate:
		return *e.StateKey == ""
	case typeMember:
		m := e.Membership()
		return (m == "leave" || m == "ban") && *e.StateKey != e.Sender.String()
	}
	return false
}

// levels is the part of a power levels event the power ordering reads.
type levels struct {
	users        map[string]int64
	usersDefault int64
}

// levelsOf parses (once) the power levels event pl.
func (r *resolver) levelsOf(pl *pdu.Event) *levels {
	if l, ok := r.levels[pl.ID]; ok {
		return l
	}
	l := &levels{users: map[string]int64{}}
	if n, ok := plInt(gjson.GetBytes(pl.Content, "users_default")); ok {
		l.usersDefault = n
	}
	gjson.GetBytes(pl.Content, "users").ForEach(func(k, v gjson.Result) bool {
		if n, ok := plInt(v); ok {
			l.users[k.Str] = n
		}
		return true
	})
	r.levels[pl.ID] = l
	return l
}

// plInt reads a power level value. Room versions before 10 allow strings
// and floats; events of later versions were validated as integers when
// they were authorised, so accepting both everywhere changes nothing.
func plInt(v gjson.Result) (int64, bool) {
	switch v.Type {
	case gjson.Number:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, false
		}
		return v.Int(), true
	case gjson.String:
		n, err := strconv.ParseInt(strings.TrimSpace(v.Str), 10, 64)
		return n, err == nil
	case gjson.True:
		return 1, true
	case gjson.False:
		return 0, true
	}
	return 0, false
}

// senderPower returns the power level of e's sender according to e's own
// auth events, as the reverse topological power ordering requires. Auth
// events must be loaded.
func (r *resolver) senderPower(e *pdu.Event) int64 {
	if p, ok := r.power[e.ID]; ok {
		return p
	}
	p := r.computeSenderPower(e)
	r.power[e.ID] = p
	return p
}

func (r *resolver) computeSenderPower(e *pdu.Event) int64 {
	if r.v.PrivilegedRoomCreators() && r.creators[e.Sender] {
		return infinitePower
	}
	var pl, create *pdu.Event
	for _, a := range e.AuthEvents {
		ae := r.evs[a]
		if ae == nil || ae.StateKey == nil || *ae.StateKey != "" {
			continue
		}
		switch ae.Type {
		case typePowerLevels:
			pl = ae
		case typeCreate:
			create = ae
		}
	}
	if pl == nil {
		// Without power levels the creator has 100 and everyone else 0 (in
		// v12 the creators were handled above).
		if create != nil && !r.v.PrivilegedRoomCreators() && creatorOf(r.v, create.PDU) == e.Sender {
			return 100
		}
		return 0
	}
	l := r.levelsOf(pl)
	if n, ok := l.users[e.Sender.String()]; ok {
		return n
	}
	return l.usersDefault
}

// creatorOf returns the creator named by a create event: content.creator
// before room version 11, the sender from 11.
func creatorOf(v id.RoomVersion, create *mpdu.PDU) id.UserID {
	if v.CreatorInContent() {
		return id.UserID(gjson.GetBytes(create.Content, "creator").Str)
	}
	return create.Sender
}

func additionalCreators(create *mpdu.PDU) []id.UserID {
	var out []id.UserID
	gjson.GetBytes(create.Content, "additional_creators").ForEach(func(_, v gjson.Result) bool {
		if v.Type == gjson.String {
			out = append(out, id.UserID(v.Str))
		}
		return true
	})
	return out
}

func authorisedVia(p *mpdu.PDU) id.UserID {
	return id.UserID(gjson.GetBytes(p.Content, "join_authorised_via_users_server").Str)
}

// powerLevelsAuthEvent returns the power levels event among e's auth events,
// or "" if there is none. It must be loaded to be found.
func (r *resolver) powerLevelsAuthEvent(e *pdu.Event) id.EventID {
	for _, a := range e.AuthEvents {
		if ae := r.evs[a]; ae != nil && ae.Type == typePowerLevels && ae.StateKey != nil && *ae.StateKey == "" {
			return a
		}
	}
	return ""
}
