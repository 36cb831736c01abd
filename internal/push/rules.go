package push

import (
	"encoding/json"
	"slices"

	"maunium.net/go/mautrix/id"
)

// Kind is one of the spec's five kinds of push rule.
type Kind string

// The kinds of rule, in the order the spec checks them.
const (
	Override  Kind = "override"
	Content   Kind = "content"
	Room      Kind = "room"
	Sender    Kind = "sender"
	Underride Kind = "underride"
)

// Kinds lists the kinds in evaluation order.
var kinds = [...]Kind{Override, Content, Room, Sender, Underride}

// ParseKind returns the kind named s, or false if there is none.
func ParseKind(s string) (Kind, bool) {
	k := Kind(s)
	return k, slices.Contains(kinds[:], k)
}

// Rule is one push rule as the spec's PushRule schema renders it.
// Conditions are kept as the JSON the client sent, so that conditions of
// kinds this server does not know survive a round trip unchanged.
type Rule struct {
	RuleID  string            `json:"rule_id"`
	Default bool              `json:"default"`
	Enabled bool              `json:"enabled"`
	Actions []json.RawMessage `json:"actions"`
	// Conditions is set (possibly empty) on override and underride rules
	// only.
	Conditions []json.RawMessage `json:"conditions,omitzero"`
	// Pattern is set on content rules only.
	Pattern *string `json:"pattern,omitempty"`
}

// Ruleset is the spec's PushRuleset: every rule of a user by kind, most
// important first.
type Ruleset struct {
	Override  []Rule `json:"override"`
	Content   []Rule `json:"content"`
	Room      []Rule `json:"room"`
	Sender    []Rule `json:"sender"`
	Underride []Rule `json:"underride"`
}

// Of returns the rules of kind k.
func (rs Ruleset) Of(k Kind) []Rule {
	switch k {
	case Override:
		return rs.Override
	case Content:
		return rs.Content
	case Room:
		return rs.Room
	case Sender:
		return rs.Sender
	default:
		return rs.Underride
	}
}

// Find returns the rule of kind k with ID ruleID.
func (rs Ruleset) Find(k Kind, ruleID string) (Rule, bool) {
	for _, r := range rs.Of(k) {
		if r.RuleID == ruleID {
			return r, true
		}
	}
	return Rule{}, false
}

// masterRule is the one server-default rule that comes before the user's
// own rules (spec: "Predefined Rules").
const masterRule = ".m.rule.master"

// legacyMentionRules are the body-matching mention rules the spec dropped
// in v1.17. They are still served, as Synapse does, but (as in Synapse,
// MSC3952) they do not apply to an event whose content has m.mentions:
// such an event says exactly whom it mentions.
var legacyMentionRules = map[string]bool{
	".m.rule.contains_display_name": true,
	".m.rule.roomnotif":             true,
	".m.rule.contains_user_name":    true,
}

// defaults returns the server-default rules for user, by kind, in the
// spec's order (v1.19 "Predefined Rules", plus the legacy mention rules
// where Synapse places them).
func defaults(user id.UserID) Ruleset {
	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	acts := func(a ...any) []json.RawMessage {
		out := make([]json.RawMessage, len(a))
		for i, v := range a {
			out[i] = raw(v)
		}
		return out
	}
	notify := "notify"
	sound := map[string]any{"set_tweak": "sound", "value": "default"}
	ring := map[string]any{"set_tweak": "sound", "value": "ring"}
	highlight := map[string]any{"set_tweak": "highlight"}
	match := func(key, pattern string) json.RawMessage {
		return raw(map[string]any{"kind": "event_match", "key": key, "pattern": pattern})
	}
	rule := func(id string, enabled bool, actions []json.RawMessage, conds ...json.RawMessage) Rule {
		if conds == nil {
			conds = []json.RawMessage{}
		}
		return Rule{RuleID: id, Default: true, Enabled: enabled, Actions: actions, Conditions: conds}
	}
	localpart := user.Localpart()
	return Ruleset{
		Override: []Rule{
			rule(masterRule, false, acts()),
			rule(".m.rule.suppress_notices", true, acts(), match("content.msgtype", "m.notice")),
			rule(".m.rule.invite_for_me", true, acts(notify, sound),
				match("type", "m.room.member"), match("content.membership", "invite"), match("state_key", user.String())),
			rule(".m.rule.member_event", true, acts(), match("type", "m.room.member")),
			rule(".m.rule.is_user_mention", true, acts(notify, sound, highlight),
				raw(map[string]any{"kind": "event_property_contains", "key": `content.m\.mentions.user_ids`, "value": user.String()})),
			rule(".m.rule.contains_display_name", true, acts(notify, sound, highlight),
				raw(map[string]any{"kind": "contains_display_name"})),
			rule(".m.rule.is_room_mention", true, acts(notify, highlight),
				raw(map[string]any{"kind": "event_property_is", "key": `content.m\.mentions.room`, "value": true}),
				raw(map[string]any{"kind": "sender_notification_permission", "key": "room"})),
			rule(".m.rule.roomnotif", true, acts(notify, highlight),
				match("content.body", "@room"),
				raw(map[string]any{"kind": "sender_notification_permission", "key": "room"})),
			rule(".m.rule.tombstone", true, acts(notify, highlight), match("type", "m.room.tombstone"), match("state_key", "")),
			rule(".m.rule.reaction", true, acts(), match("type", "m.reaction")),
			rule(".m.rule.room.server_acl", true, acts(), match("type", "m.room.server_acl"), match("state_key", "")),
			rule(".m.rule.suppress_edits", true, acts(),
				raw(map[string]any{"kind": "event_property_is", "key": `content.m\.relates_to.rel_type`, "value": "m.replace"})),
		},
		Content: []Rule{
			{RuleID: ".m.rule.contains_user_name", Default: true, Enabled: true, Actions: acts(notify, sound, highlight), Pattern: &localpart},
		},
		Room:   []Rule{},
		Sender: []Rule{},
		Underride: []Rule{
			rule(".m.rule.call", true, acts(notify, ring), match("type", "m.call.invite")),
			rule(".m.rule.encrypted_room_one_to_one", true, acts(notify, sound),
				raw(map[string]any{"kind": "room_member_count", "is": "2"}), match("type", "m.room.encrypted")),
			rule(".m.rule.room_one_to_one", true, acts(notify, sound),
				raw(map[string]any{"kind": "room_member_count", "is": "2"}), match("type", "m.room.message")),
			rule(".m.rule.message", true, acts(notify), match("type", "m.room.message")),
			rule(".m.rule.encrypted", true, acts(notify), match("type", "m.room.encrypted")),
		},
	}
}

// userRules is what the push_rules table stores for one user: the user's
// own rules and the changes made to server-default rules. Only changes
// are stored, so a later server version's defaults reach every user.
type userRules struct {
	// Rules are the user-defined rules by kind, most important first.
	Rules map[Kind][]Rule `json:"rules,omitempty"`
	// Defaults holds changes to server-default rules by "kind/rule_id".
	Defaults map[string]defaultChange `json:"defaults,omitempty"`
}

// defaultChange is a user's change to one server-default rule.
type defaultChange struct {
	Enabled *bool             `json:"enabled,omitempty"`
	Actions []json.RawMessage `json:"actions,omitzero"`
}

// render builds the user's full ruleset: .m.rule.master, then the user's
// rules of each kind, then the server-default rules of that kind with the
// user's changes applied (spec: server-default rules rank below
// user-defined ones, except the master rule).
func (u *userRules) render(user id.UserID) Ruleset {
	d := defaults(user)
	out := Ruleset{}
	for _, k := range kinds {
		rules := []Rule{}
		var defs []Rule
		for _, r := range d.Of(k) {
			if c, ok := u.Defaults[string(k)+"/"+r.RuleID]; ok {
				if c.Enabled != nil {
					r.Enabled = *c.Enabled
				}
				if c.Actions != nil {
					r.Actions = c.Actions
				}
			}
			defs = append(defs, r)
		}
		if k == Override && len(defs) > 0 && defs[0].RuleID == masterRule {
			rules = append(rules, defs[0])
			defs = defs[1:]
		}
		rules = append(rules, u.Rules[k]...)
		rules = append(rules, defs...)
		switch k {
		case Override:
			out.Override = rules
		case Content:
			out.Content = rules
		case Room:
			out.Room = rules
		case Sender:
			out.Sender = rules
		case Underride:
			out.Underride = rules
		}
	}
	return out
}

// isDefault reports whether ruleID names a server-default rule: those IDs,
// and only those, start with a dot.
func isDefault(ruleID string) bool { return len(ruleID) > 0 && ruleID[0] == '.' }
