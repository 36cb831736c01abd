package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// defaultPushRules builds the server-default push ruleset of the spec
// (Push Notifications module, "Predefined Rules") for user. Until push
// rules can be edited, every user has these.
func defaultPushRules(user string) map[string]any {
	notify := []any{"notify"}
	sound := map[string]any{"set_tweak": "sound", "value": "default"}
	ring := map[string]any{"set_tweak": "sound", "value": "ring"}
	highlight := map[string]any{"set_tweak": "highlight"}
	ev := func(key, pattern string) map[string]any {
		return map[string]any{"kind": "event_match", "key": key, "pattern": pattern}
	}
	rule := func(id string, enabled bool, actions []any, conds ...map[string]any) map[string]any {
		if conds == nil {
			conds = []map[string]any{}
		}
		return map[string]any{"rule_id": id, "default": true, "enabled": enabled, "actions": actions, "conditions": conds}
	}
	return map[string]any{
		"override": []any{
			rule(".m.rule.master", false, []any{}),
			rule(".m.rule.suppress_notices", true, []any{}, ev("content.msgtype", "m.notice")),
			rule(".m.rule.invite_for_me", true, append(notify, sound),
				ev("type", "m.room.member"), ev("content.membership", "invite"), ev("state_key", user)),
			rule(".m.rule.member_event", true, []any{}, ev("type", "m.room.member")),
			rule(".m.rule.is_user_mention", true, append(notify, sound, highlight),
				map[string]any{"kind": "event_property_contains", "key": `content.m\.mentions.user_ids`, "value": user}),
			rule(".m.rule.is_room_mention", true, append(notify, highlight),
				map[string]any{"kind": "event_property_is", "key": `content.m\.mentions.room`, "value": true},
				map[string]any{"kind": "sender_notification_permission", "key": "room"}),
			rule(".m.rule.tombstone", true, append(notify, highlight),
				ev("type", "m.room.tombstone"), ev("state_key", "")),
			rule(".m.rule.reaction", true, []any{}, ev("type", "m.reaction")),
			rule(".m.rule.room.server_acl", true, []any{}, ev("type", "m.room.server_acl"), ev("state_key", "")),
			rule(".m.rule.suppress_edits", true, []any{},
				map[string]any{"kind": "event_property_is", "key": `content.m\.relates_to.rel_type`, "value": "m.replace"}),
		},
		"content": []any{},
		"room":    []any{},
		"sender":  []any{},
		"underride": []any{
			rule(".m.rule.call", true, append(notify, ring), ev("type", "m.call.invite")),
			rule(".m.rule.encrypted_room_one_to_one", true, append(notify, sound),
				map[string]any{"kind": "room_member_count", "is": "2"}, ev("type", "m.room.encrypted")),
			rule(".m.rule.room_one_to_one", true, append(notify, sound),
				map[string]any{"kind": "room_member_count", "is": "2"}, ev("type", "m.room.message")),
			rule(".m.rule.message", true, notify, ev("type", "m.room.message")),
			rule(".m.rule.encrypted", true, notify, ev("type", "m.room.encrypted")),
		},
	}
}

// getPushRules serves GET /_matrix/client/v3/pushrules/ (pushrules.yaml):
// the server-default ruleset. Editing rules is not supported yet.
func (a *API) getPushRules(w http.ResponseWriter, r *http.Request) error {
	return httpx.OK(w, map[string]any{"global": defaultPushRules(session(r).UserID.String())})
}

// getPushRulesGlobal serves GET /_matrix/client/v3/pushrules/global/ (pushrules.yaml).
func (a *API) getPushRulesGlobal(w http.ResponseWriter, r *http.Request) error {
	return httpx.OK(w, defaultPushRules(session(r).UserID.String()))
}
