package push

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"

	"maunium.net/go/mautrix/id"
)

func mustEvent(t testing.TB, v any) *Event {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// holds evaluates one condition (given as JSON) against ev.
func holds(t *testing.T, condJSON string, ev *Event, room RoomContext, displayName string) bool {
	t.Helper()
	c := compileCondition(json.RawMessage(condJSON), false)
	return c.holds(&Compiled{}, ev, &room, displayName)
}

func TestEventMatchSpecExamples(t *testing.T) {
	cond := `{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}`
	topic := func(v any) *Event {
		return mustEvent(t, map[string]any{"type": "m.room.topic", "state_key": "", "sender": "@example:example.org",
			"content": map[string]any{"topic": v}})
	}
	for v, want := range map[any]bool{"Lunch plans": true, "LUNCH": true, " lunch": false, "lunc": false, nil: false, 5: false} {
		if got := holds(t, cond, topic(v), RoomContext{}, ""); got != want {
			t.Errorf("topic %#v: match = %v, want %v", v, got, want)
		}
	}
	// The property must be present, even for "*".
	if holds(t, `{"kind":"event_match","key":"content.missing","pattern":"*"}`, topic("x"), RoomContext{}, "") {
		t.Error("* matched an absent property")
	}
	// Literal patterns match the whole value, case-insensitively.
	if !holds(t, `{"kind":"event_match","key":"type","pattern":"M.ROOM.TOPIC"}`, topic("x"), RoomContext{}, "") ||
		holds(t, `{"kind":"event_match","key":"type","pattern":"m.room"}`, topic("x"), RoomContext{}, "") {
		t.Error("literal event_match is not a whole-value case-insensitive match")
	}
}

func TestEventMatchBodyWordBoundaries(t *testing.T) {
	body := func(b string) *Event {
		return mustEvent(t, map[string]any{"type": "m.room.message", "sender": "@example:example.org",
			"content": map[string]any{"body": b}})
	}
	cases := []struct {
		pattern, body string
		want          bool
	}{
		// The spec's examples for "ex*ple".
		{"ex*ple", "An example event.", true},
		{"ex*ple", "exple", true},
		{"ex*ple", "An exciting triple-whammy", true},
		{"ex*ple", "Some examples", false},
		{"ex*ple", "complex*ple", false},
		{"cake", "I like CAKE.", true},
		{"cake", "cake", true},
		{"cake", "pancakes", false},
		{"cake", "cake_shop", false},
		{"cake", "cake-shop", true},
		{"@room", "hello @room!", true},
		{"@room", "@roomy", false},
		{"c?ke", "a coke please", true},
		{"c?ke", "a ckE please", false},
		{"été", "un Été chaud", true},
	}
	for _, c := range cases {
		cond := fmt.Sprintf(`{"kind":"event_match","key":"content.body","pattern":%q}`, c.pattern)
		if got := holds(t, cond, body(c.body), RoomContext{}, ""); got != c.want {
			t.Errorf("pattern %q body %q: match = %v, want %v", c.pattern, c.body, got, c.want)
		}
	}
}

func TestEventPropertyIsSpecExamples(t *testing.T) {
	create := func(v any) *Event {
		return mustEvent(t, map[string]any{"type": "m.room.create", "state_key": "",
			"content": map[string]any{"creator": "@example:example.org", "m.federate": v, "room_version": "1"}})
	}
	cond := `{"kind":"event_property_is","key":"content.m\\.federate","value":true}`
	for v, want := range map[any]bool{true: true, false: false, "true": false, 1: false} {
		if got := holds(t, cond, create(v), RoomContext{}, ""); got != want {
			t.Errorf("m.federate %#v: match = %v, want %v", v, got, want)
		}
	}
	// Integers, strings and null compare exactly; floats and objects never.
	for _, c := range []struct {
		value, prop any
		want        bool
	}{
		{1, 1, true}, {1, 1.5, false}, {"a", "a", true}, {"a", "A", false},
		{nil, nil, true}, {nil, "null", false}, {1, map[string]any{"a": 1}, false},
	} {
		ev := mustEvent(t, map[string]any{"type": "x", "content": map[string]any{"p": c.prop}})
		raw, _ := json.Marshal(map[string]any{"kind": "event_property_is", "key": "content.p", "value": c.value})
		if got := holds(t, string(raw), ev, RoomContext{}, ""); got != c.want {
			t.Errorf("value %#v vs %#v: match = %v, want %v", c.value, c.prop, got, c.want)
		}
	}
	// An absent property does not match null.
	if holds(t, `{"kind":"event_property_is","key":"content.nope","value":null}`, create(true), RoomContext{}, "") {
		t.Error("absent property matched null")
	}
}

func TestEventPropertyContainsSpecExample(t *testing.T) {
	ev := mustEvent(t, map[string]any{"type": "m.room.canonical_alias", "state_key": "",
		"content": map[string]any{"alias": "#somewhere:localhost", "alt_aliases": []any{"#somewhere:example.org", "#myroom:example.com", 7, map[string]any{"x": 1}}}})
	for v, want := range map[any]bool{"#myroom:example.com": true, ":example.com": false, 7: true, "7": false} {
		raw, _ := json.Marshal(map[string]any{"kind": "event_property_contains", "key": "content.alt_aliases", "value": v})
		if got := holds(t, string(raw), ev, RoomContext{}, ""); got != want {
			t.Errorf("value %#v: match = %v, want %v", v, got, want)
		}
	}
	if holds(t, `{"kind":"event_property_contains","key":"content.alias","value":"#somewhere:localhost"}`, ev, RoomContext{}, "") {
		t.Error("contains matched a non-array property")
	}
}

func TestDottedPathEscaping(t *testing.T) {
	ev := mustEvent(t, map[string]any{"type": "m.room.message", "content": map[string]any{
		"m.relates_to": map[string]any{"rel_type": "m.replace"},
		`m\foo`:        "backslash",
		`a\xb`:         "other escape",
		"m":            map[string]any{"relates_to": map[string]any{"rel_type": "nested"}},
	}})
	for key, want := range map[string]any{
		`content.m\.relates_to.rel_type`: "m.replace",
		`content.m.relates_to.rel_type`:  "nested",
		`content.m\\foo`:                 "backslash",
		`content.a\xb`:                   "other escape",
	} {
		raw, _ := json.Marshal(map[string]any{"kind": "event_property_is", "key": key, "value": want})
		if !holds(t, string(raw), ev, RoomContext{}, "") {
			t.Errorf("key %s did not find %v", key, want)
		}
	}
}

func TestContainsDisplayName(t *testing.T) {
	ev := func(body string) *Event {
		return mustEvent(t, map[string]any{"type": "m.room.message", "content": map[string]any{"body": body}})
	}
	cond := `{"kind":"contains_display_name"}`
	for _, c := range []struct {
		body, name string
		want       bool
	}{
		{"Hello Alice Smith!", "Alice Smith", true},
		{"hello alice", "Alice", true},
		{"Alicey", "Alice", false},
		{"anything", "", false},
		{"a.b*c", "b*c", true}, // the display name is literal, not a glob
		{"abxc", "b*c", false},
	} {
		if got := holds(t, cond, ev(c.body), RoomContext{}, c.name); got != c.want {
			t.Errorf("body %q name %q: match = %v, want %v", c.body, c.name, got, c.want)
		}
	}
}

func TestRoomMemberCount(t *testing.T) {
	ev := mustEvent(t, map[string]any{"type": "m.room.message"})
	for _, c := range []struct {
		is    string
		count int
		want  bool
	}{
		{"2", 2, true}, {"2", 3, false}, {"==2", 2, true}, {"<2", 1, true}, {"<2", 2, false},
		{">2", 3, true}, {">2", 2, false}, {"<=10", 10, true}, {"<=10", 11, false}, {">=3", 3, true}, {">=3", 2, false},
		{"x", 2, false}, {"", 0, false}, {"=2", 2, false},
	} {
		cond := fmt.Sprintf(`{"kind":"room_member_count","is":%q}`, c.is)
		if got := holds(t, cond, ev, RoomContext{MemberCount: c.count}, ""); got != c.want {
			t.Errorf("is %q count %d: match = %v, want %v", c.is, c.count, got, c.want)
		}
	}
}

func TestSenderNotificationPermission(t *testing.T) {
	ev := mustEvent(t, map[string]any{"type": "m.room.message"})
	cond := `{"kind":"sender_notification_permission","key":"room"}`
	for _, c := range []struct {
		room RoomContext
		want bool
	}{
		{RoomContext{SenderPower: 50}, true}, // the default level is 50
		{RoomContext{SenderPower: 49}, false},
		{RoomContext{SenderPower: 0, NotificationPower: map[string]int64{"room": 0}}, true},
		{RoomContext{SenderPower: 99, NotificationPower: map[string]int64{"room": 100}}, false},
		{RoomContext{SenderPower: math.MaxInt64, NotificationPower: map[string]int64{"room": 100}}, true},
	} {
		if got := holds(t, cond, ev, c.room, ""); got != c.want {
			t.Errorf("%+v: match = %v, want %v", c.room, got, c.want)
		}
	}
}

func TestUnknownConditionNeverMatches(t *testing.T) {
	ev := mustEvent(t, map[string]any{"type": "m.room.message"})
	if holds(t, `{"kind":"org.example.future"}`, ev, RoomContext{}, "") {
		t.Error("an unknown condition matched")
	}
}

// tweaks names a result's actions compactly: notify, sound=..., highlight.
func tweaks(r Result) []string {
	var out []string
	for _, a := range r.Actions {
		var s string
		if json.Unmarshal(a, &s) == nil {
			out = append(out, s)
			continue
		}
		var t struct {
			SetTweak string `json:"set_tweak"`
			Value    any    `json:"value"`
		}
		_ = json.Unmarshal(a, &t)
		if t.Value != nil {
			out = append(out, fmt.Sprintf("%s=%v", t.SetTweak, t.Value))
		} else {
			out = append(out, t.SetTweak)
		}
	}
	return out
}

func TestDefaultRulesOnSpecScenarios(t *testing.T) {
	const bob = id.UserID("@bob:example.org")
	c := Compile((&userRules{}).render(bob), bob)
	msg := func(typ string, content map[string]any) map[string]any {
		return map[string]any{"type": typ, "sender": "@alice:example.org", "room_id": "!r:example.org", "content": content}
	}
	group := RoomContext{MemberCount: 5}
	dm := RoomContext{MemberCount: 2}
	powerful := RoomContext{MemberCount: 5, SenderPower: 100}
	cases := []struct {
		name    string
		ev      map[string]any
		room    RoomContext
		display string
		rule    string
		actions []string
	}{
		{"user mention", msg("m.room.message", map[string]any{"body": "hi", "m.mentions": map[string]any{"user_ids": []any{bob.String()}}}),
			group, "", ".m.rule.is_user_mention", []string{"notify", "sound=default", "highlight"}},
		{"room mention with power", msg("m.room.message", map[string]any{"body": "@room hi", "m.mentions": map[string]any{"room": true}}),
			powerful, "", ".m.rule.is_room_mention", []string{"notify", "highlight"}},
		{"room mention without power", msg("m.room.message", map[string]any{"body": "@room hi", "m.mentions": map[string]any{"room": true}}),
			group, "", ".m.rule.message", []string{"notify"}},
		{"DM", msg("m.room.message", map[string]any{"body": "hi"}), dm, "", ".m.rule.room_one_to_one", []string{"notify", "sound=default"}},
		{"encrypted DM", msg("m.room.encrypted", map[string]any{"ciphertext": "x"}), dm, "", ".m.rule.encrypted_room_one_to_one", []string{"notify", "sound=default"}},
		{"encrypted group", msg("m.room.encrypted", map[string]any{"ciphertext": "x"}), group, "", ".m.rule.encrypted", []string{"notify"}},
		{"group message", msg("m.room.message", map[string]any{"body": "hi"}), group, "", ".m.rule.message", []string{"notify"}},
		{"edit", msg("m.room.message", map[string]any{"body": "* hi", "m.new_content": map[string]any{"body": "hi"},
			"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": "$x"}}), dm, "", ".m.rule.suppress_edits", nil},
		{"reaction", msg("m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}}),
			dm, "", ".m.rule.reaction", nil},
		{"notice", msg("m.room.message", map[string]any{"msgtype": "m.notice", "body": "bot"}), dm, "", ".m.rule.suppress_notices", nil},
		{"invite for me", map[string]any{"type": "m.room.member", "state_key": bob.String(), "sender": "@alice:example.org", "content": map[string]any{"membership": "invite"}},
			group, "", ".m.rule.invite_for_me", []string{"notify", "sound=default"}},
		{"other member event", map[string]any{"type": "m.room.member", "state_key": "@carol:example.org", "sender": "@carol:example.org", "content": map[string]any{"membership": "join"}},
			group, "", ".m.rule.member_event", nil},
		{"tombstone", map[string]any{"type": "m.room.tombstone", "state_key": "", "sender": "@alice:example.org", "content": map[string]any{"replacement_room": "!n:x"}},
			group, "", ".m.rule.tombstone", []string{"notify", "highlight"}},
		{"server acl", map[string]any{"type": "m.room.server_acl", "state_key": "", "sender": "@alice:example.org", "content": map[string]any{}},
			group, "", ".m.rule.room.server_acl", nil},
		{"call", msg("m.call.invite", map[string]any{"call_id": "1"}), group, "", ".m.rule.call", []string{"notify", "sound=ring"}},
		{"legacy display name", msg("m.room.message", map[string]any{"body": "ping Bobby Tables"}), group, "Bobby Tables",
			".m.rule.contains_display_name", []string{"notify", "sound=default", "highlight"}},
		{"legacy user name", msg("m.room.message", map[string]any{"body": "hey BOB"}), group, "",
			".m.rule.contains_user_name", []string{"notify", "sound=default", "highlight"}},
		{"legacy rules off with m.mentions", msg("m.room.message", map[string]any{"body": "hey bob", "m.mentions": map[string]any{}}), group, "bob",
			".m.rule.message", []string{"notify"}},
		{"legacy @room with power", msg("m.room.message", map[string]any{"body": "@room lunch"}), powerful, "",
			".m.rule.roomnotif", []string{"notify", "highlight"}},
		{"legacy @room without power", msg("m.room.message", map[string]any{"body": "@room lunch"}), group, "",
			".m.rule.message", []string{"notify"}},
		{"unmatched state event", map[string]any{"type": "m.room.topic", "state_key": "", "sender": "@alice:example.org", "content": map[string]any{"topic": "t"}},
			group, "", "", nil},
	}
	for _, tc := range cases {
		r := c.Evaluate(mustEvent(t, tc.ev), tc.room, tc.display)
		if r.RuleID != tc.rule || !slices.Equal(tweaks(r), tc.actions) {
			t.Errorf("%s: rule %q actions %v, want %q %v", tc.name, r.RuleID, tweaks(r), tc.rule, tc.actions)
		}
		if want := slices.Contains(tc.actions, "notify"); r.Notify != want {
			t.Errorf("%s: notify = %v", tc.name, r.Notify)
		}
		if want := slices.Contains(tc.actions, "highlight"); r.Highlight != want {
			t.Errorf("%s: highlight = %v", tc.name, r.Highlight)
		}
	}
	// The shared compiled defaults answer for each user: bob's mention and
	// invite are not carol's.
	const carol = id.UserID("@carol:example.org")
	cc := Compile((&userRules{}).render(carol), carol)
	for _, tc := range cases[:1] {
		if r := cc.Evaluate(mustEvent(t, tc.ev), tc.room, ""); r.RuleID != ".m.rule.message" {
			t.Errorf("carol, %s: rule %q", tc.name, r.RuleID)
		}
	}
	invite := mustEvent(t, map[string]any{"type": "m.room.member", "state_key": bob.String(), "sender": "@alice:example.org", "content": map[string]any{"membership": "invite"}})
	if r := cc.Evaluate(invite, group, ""); r.RuleID != ".m.rule.member_event" {
		t.Errorf("carol, bob's invite: rule %q", r.RuleID)
	}
	if r := cc.Evaluate(mustEvent(t, msg("m.room.message", map[string]any{"body": "hey bob"})), group, ""); r.RuleID != ".m.rule.message" {
		t.Errorf("carol, bob's name: rule %q", r.RuleID)
	}
	// The user's own events never notify.
	own := mustEvent(t, map[string]any{"type": "m.room.message", "sender": bob.String(), "content": map[string]any{"body": "hi"}})
	if r := c.Evaluate(own, dm, ""); r.RuleID != "" || r.Notify {
		t.Errorf("own event: %+v", r)
	}
}

func TestUserRulesOrderAndMaster(t *testing.T) {
	const bob = id.UserID("@bob:example.org")
	pattern := "lunch"
	enabled, off := true, false
	u := &userRules{
		Rules: map[Kind][]Rule{
			Override: {{RuleID: "beer", Enabled: true, Actions: []json.RawMessage{json.RawMessage(`"notify"`)},
				Conditions: []json.RawMessage{json.RawMessage(`{"kind":"event_match","key":"content.body","pattern":"beer"}`)}}},
			Content: {{RuleID: "lunch", Enabled: true, Actions: []json.RawMessage{json.RawMessage(`"notify"`), json.RawMessage(`{"set_tweak":"highlight","value":false}`)}, Pattern: &pattern}},
			Room:    {{RuleID: "!quiet:example.org", Enabled: true, Actions: []json.RawMessage{}}},
			Sender:  {{RuleID: "@spam:example.org", Enabled: true, Actions: []json.RawMessage{}}},
		},
		Defaults: map[string]defaultChange{"underride/.m.rule.message": {Enabled: &off}},
	}
	rs := u.render(bob)
	if rs.Override[0].RuleID != masterRule || rs.Override[1].RuleID != "beer" || rs.Override[2].RuleID != ".m.rule.suppress_notices" {
		t.Fatalf("override order: %v", ids(rs.Override))
	}
	if ids(rs.Content)[0] != "lunch" {
		t.Fatalf("content order: %v", ids(rs.Content))
	}
	c := Compile(rs, bob)
	ev := func(room, sender, body string) *Event {
		return mustEvent(t, map[string]any{"type": "m.room.message", "room_id": room, "sender": sender, "content": map[string]any{"body": body}})
	}
	group := RoomContext{MemberCount: 5}
	for _, tc := range []struct {
		ev   *Event
		rule string
	}{
		{ev("!r:x", "@a:x", "beer o'clock, a notice"), "beer"},
		{ev("!r:x", "@a:x", "lunch?"), "lunch"},
		{ev("!quiet:example.org", "@a:x", "hi"), "!quiet:example.org"},
		{ev("!r:x", "@spam:example.org", "hi"), "@spam:example.org"},
		{ev("!r:x", "@a:x", "hi"), ""}, // .m.rule.message is disabled
	} {
		if r := c.Evaluate(tc.ev, group, ""); r.RuleID != tc.rule {
			t.Errorf("got rule %q, want %q", r.RuleID, tc.rule)
		}
	}
	if r := c.Evaluate(ev("!r:x", "@a:x", "lunch?"), group, ""); r.Highlight || !r.Notify {
		t.Errorf("highlight false tweak: %+v", r)
	}
	u.Defaults["override/"+masterRule] = defaultChange{Enabled: &enabled}
	c = Compile(u.render(bob), bob)
	if r := c.Evaluate(ev("!r:x", "@a:x", "beer"), group, ""); r.RuleID != masterRule || r.Notify {
		t.Errorf("master rule: %+v", r)
	}
}

func ids(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.RuleID)
	}
	return out
}

func TestDefaultRuleOrder(t *testing.T) {
	rs := defaults("@bob:example.org")
	want := map[Kind][]string{
		Override: {".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
			".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention", ".m.rule.roomnotif",
			".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"},
		Content:   {".m.rule.contains_user_name"},
		Underride: {".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"},
	}
	for _, k := range kinds {
		if got := ids(rs.Of(k)); !slices.Equal(got, want[k]) {
			t.Errorf("%s: %v, want %v", k, got, want[k])
		}
	}
}

// BenchmarkEvaluate1000Members evaluates one group message for each of
// 1,000 members, each with their own compiled ruleset (the defaults), as
// the per-event fan-out does. One op is one event for all 1,000 members.
// The message mentions no one, so it goes through every override rule,
// the legacy body rules and the content rules before .m.rule.message.
func BenchmarkEvaluate1000Members(b *testing.B) {
	members := make([]*Compiled, 1000)
	names := make([]string, 1000)
	for i := range members {
		u := id.UserID(fmt.Sprintf("@user%d:example.org", i))
		members[i] = Compile(defaults(u), u)
		names[i] = fmt.Sprintf("User Number %d", i)
	}
	raw, _ := json.Marshal(map[string]any{"type": "m.room.message", "sender": "@alice:example.org", "room_id": "!r:example.org",
		"event_id": "$e", "origin_server_ts": 1, "content": map[string]any{"msgtype": "m.text", "body": "Is anyone up for lunch at the usual place around noon today?"}})
	room := RoomContext{MemberCount: 1000, SenderPower: 0}
	b.ReportAllocs()
	for b.Loop() {
		ev, err := NewEvent(raw)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for i, c := range members {
			if c.Evaluate(ev, room, names[i]).Notify {
				n++
			}
		}
		if n != 1000 {
			b.Fatalf("%d notified", n)
		}
	}
}
