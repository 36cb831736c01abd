package push

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"maunium.net/go/mautrix/id"
)

// Event is an event prepared once for evaluation against many users' rule
// sets: its properties flattened into dot-separated paths (appendix "Dot-
// separated property paths", escaped as there) and its body lowercased.
type Event struct {
	flat        map[string]any
	typ         string // most conditions test the type: it skips the map
	sender      string
	roomID      string
	hasMentions bool
	body        string // content.body, lowercased
	hasBody     bool
}

// NewEvent parses a client-format or PDU-format event for evaluation.
func NewEvent(raw json.RawMessage) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("parsing event for push rules: not a JSON object")
	}
	e := &Event{flat: make(map[string]any, 16)}
	flatten("", m, e.flat)
	e.typ, _ = m["type"].(string)
	e.sender, _ = m["sender"].(string)
	e.roomID, _ = m["room_id"].(string)
	if content, ok := m["content"].(map[string]any); ok {
		_, e.hasMentions = content["m.mentions"]
	}
	if b, ok := e.flat["content.body"].(string); ok {
		e.body, e.hasBody = strings.ToLower(b), true
	}
	return e, nil
}

// flatten stores every non-object value of m under its escaped path.
func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		key := prefix + escapeSegment(k)
		if sub, ok := v.(map[string]any); ok {
			flatten(key+".", sub, out)
			continue
		}
		out[key] = normalize(v)
	}
}

// normalize turns decoded JSON into the values conditions compare with:
// integers in the canonical range as int64, null as nullValue; other
// numbers stay json.Number and so equal no condition value.
func normalize(v any) any {
	switch v := v.(type) {
	case nil:
		return nullValue{}
	case json.Number:
		if n, ok := canonicalInt(v.String()); ok {
			return n
		}
		return v
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			if _, obj := x.(map[string]any); obj {
				out[i] = nil // compound values are ignored (never equal)
				continue
			}
			out[i] = normalize(x)
		}
		return out
	}
	return v
}

// escapeSegment escapes one property name for a dot-separated path.
func escapeSegment(s string) string {
	if !strings.ContainsAny(s, `.\`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `.`, `\.`).Replace(s)
}

// canonicalPath rewrites a condition's key so that it equals the flattened
// path of the property it names: `\.` is a literal dot, `\\` a literal
// backslash, and any other backslash is literal too (appendix).
func canonicalPath(key string) string {
	var segs []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '\\' && i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\'):
			cur.WriteByte(key[i+1])
			i++
		case c == '.':
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	segs = append(segs, cur.String())
	for i, s := range segs {
		segs[i] = escapeSegment(s)
	}
	return strings.Join(segs, ".")
}

// RoomContext is what conditions need to know about the room, shared by
// every member an event is evaluated for.
type RoomContext struct {
	// MemberCount is the number of joined members.
	MemberCount int
	// SenderPower is the sender's power level (math.MaxInt64 for a room
	// creator in room versions where creators outrank every level).
	SenderPower int64
	// NotificationPower is the power levels' notifications object; absent
	// keys need 50.
	NotificationPower map[string]int64
}

// Result is the outcome of evaluating an event for one user.
type Result struct {
	// RuleID is the rule that matched, "" if none did.
	RuleID string
	// Actions are the matching rule's actions.
	Actions []json.RawMessage
	// Notify and Highlight summarise Actions: the notify action, and a
	// highlight tweak whose value is absent or true.
	Notify, Highlight bool
}

// Compiled is a user's ruleset ready for evaluation: disabled rules
// dropped, patterns compiled, paths canonicalised. It is immutable and
// safe for concurrent use.
//
// Server-default rules the user has not changed point into one compiled
// copy shared by every user (see template): what makes them differ, the
// user's ID and localpart, is read from the Compiled at evaluation. So
// evaluating an event for a thousand members walks the same few kilobytes
// of rules instead of a thousand copies that do not fit in the CPU cache.
type Compiled struct {
	user      string
	localpart string // lowercased
	rules     []*compiledRule
}

type compiledRule struct {
	id                string
	legacy            bool
	conds             []cond
	actions           []json.RawMessage
	notify, highlight bool
}

type condOp uint8

const (
	opNever       condOp = iota // unknown or malformed: never matches
	opMatchLit                  // event_match, whole value, no wildcards
	opTypeLit                   // event_match on type, no wildcards
	opMatchGlob                 // event_match, whole value, glob
	opBodyLit                   // event_match on content.body, no wildcards
	opBodyGlob                  // event_match on content.body, glob
	opIs                        // event_property_is
	opContains                  // event_property_contains
	opDisplayName               // contains_display_name
	opMemberCount               // room_member_count
	opSenderPerm                // sender_notification_permission
	opRoomID                    // a room rule
	opSender                    // a sender rule
	// The shared defaults' conditions on the evaluating user (template).
	opMatchSelf         // event_match of the user's ID
	opContainsSelf      // event_property_contains of the user's ID
	opBodySelfLocalpart // content rule on the user's localpart
)

type cond struct {
	op    condOp
	key   string
	lit   string // lowercased literal pattern, room ID, sender or power key
	re    *regexp.Regexp
	value any
	cmp   string
	n     int64
}

// selfUser stands for the evaluating user in the shared compiled defaults.
const selfUser = id.UserID("@\x00self:\x00")

// template is the server-default ruleset compiled once for selfUser, by
// kind and rule ID. It is immutable once built.
var template = sync.OnceValue(func() map[string]*compiledRule {
	out := map[string]*compiledRule{}
	d := defaults(selfUser)
	for _, k := range kinds {
		for _, r := range d.Of(k) {
			out[string(k)+"/"+r.RuleID] = compileRule(k, r, true)
		}
	}
	return out
})

// Compile prepares the ruleset of user for evaluation.
func Compile(rs Ruleset, user id.UserID) *Compiled {
	c := &Compiled{user: user.String(), localpart: strings.ToLower(user.Localpart())}
	var pristine Ruleset
	for _, k := range kinds {
		for _, r := range rs.Of(k) {
			if !r.Enabled {
				continue
			}
			if r.Default {
				if pristine.Override == nil {
					pristine = defaults(user)
				}
				if d, ok := pristine.Find(k, r.RuleID); ok && sameRule(d, r) {
					c.rules = append(c.rules, template()[string(k)+"/"+r.RuleID])
					continue
				}
			}
			c.rules = append(c.rules, compileRule(k, r, false))
		}
	}
	return c
}

// sameRule reports whether r is the server-default rule d unchanged.
func sameRule(d, r Rule) bool {
	a, _ := json.Marshal(d)
	b, _ := json.Marshal(Rule{RuleID: r.RuleID, Default: true, Enabled: true, Actions: r.Actions, Conditions: r.Conditions, Pattern: r.Pattern})
	return d.Enabled && string(a) == string(b)
}

// compileRule compiles one enabled rule of kind k. In the shared template
// (self), the selfUser placeholder compiles to "the evaluating user".
func compileRule(k Kind, r Rule, self bool) *compiledRule {
	cr := &compiledRule{id: r.RuleID, legacy: r.Default && legacyMentionRules[r.RuleID], actions: r.Actions}
	cr.notify, cr.highlight = summarise(r.Actions)
	switch k {
	case Override, Underride:
		for _, raw := range r.Conditions {
			cr.conds = append(cr.conds, compileCondition(raw, self))
		}
	case Content:
		switch {
		case r.Pattern == nil:
			cr.conds = []cond{{op: opNever}}
		case self && *r.Pattern == selfUser.Localpart():
			cr.conds = []cond{{op: opBodySelfLocalpart}}
		default:
			cr.conds = []cond{matchCond("content.body", *r.Pattern)}
		}
	case Room:
		cr.conds = []cond{{op: opRoomID, lit: r.RuleID}}
	case Sender:
		cr.conds = []cond{{op: opSender, lit: r.RuleID}}
	}
	return cr
}

// summarise reads the notify action and the highlight tweak.
func summarise(actions []json.RawMessage) (notify, highlight bool) {
	for _, a := range actions {
		var s string
		if json.Unmarshal(a, &s) == nil {
			notify = notify || s == "notify"
			continue
		}
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) == nil && t.SetTweak == "highlight" {
			v := string(bytes.TrimSpace(t.Value))
			highlight = v == "" || v == "true"
		}
	}
	return notify, highlight
}

func compileCondition(raw json.RawMessage, self bool) cond {
	var c condition
	if json.Unmarshal(raw, &c) != nil {
		return cond{op: opNever}
	}
	switch c.Kind {
	case "event_match":
		if c.Key == nil || c.Pattern == nil {
			return cond{op: opNever}
		}
		if self && *c.Pattern == selfUser.String() {
			return cond{op: opMatchSelf, key: canonicalPath(*c.Key)}
		}
		return matchCond(*c.Key, *c.Pattern)
	case "event_property_is", "event_property_contains":
		v, ok := scalar(c.Value)
		if c.Key == nil || !ok {
			return cond{op: opNever}
		}
		op := opIs
		if c.Kind == "event_property_contains" {
			op = opContains
			if self && v == any(selfUser.String()) {
				op = opContainsSelf
			}
		}
		return cond{op: op, key: canonicalPath(*c.Key), value: v}
	case "contains_display_name":
		return cond{op: opDisplayName}
	case "room_member_count":
		if c.Is == nil {
			return cond{op: opNever}
		}
		cmp, n, ok := parseIs(*c.Is)
		if !ok {
			return cond{op: opNever}
		}
		return cond{op: opMemberCount, cmp: cmp, n: n}
	case "sender_notification_permission":
		if c.Key == nil {
			return cond{op: opNever}
		}
		return cond{op: opSenderPerm, lit: *c.Key}
	}
	return cond{op: opNever}
}

// matchCond compiles an event_match: a whole-value glob, or for
// content.body a glob over any substring between word boundaries (spec
// "Conditions"). Patterns without wildcards take a faster path.
func matchCond(key, pattern string) cond {
	key = canonicalPath(key)
	body := key == "content.body"
	lower := strings.ToLower(pattern)
	if !strings.ContainsAny(pattern, "*?") && (pattern != "" || !body) {
		if body {
			return cond{op: opBodyLit, key: key, lit: lower}
		}
		if key == "type" {
			return cond{op: opTypeLit, key: key, lit: pattern}
		}
		return cond{op: opMatchLit, key: key, lit: pattern}
	}
	var g strings.Builder
	for _, r := range pattern {
		switch r {
		case '*':
			g.WriteString(".*")
		case '?':
			g.WriteString(".")
		default:
			g.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	expr := `(?is)^(?:` + g.String() + `)$`
	op := opMatchGlob
	if body {
		// \w is [0-9A-Za-z_], the spec's word characters.
		expr = `(?is)(?:^|\W|\b)(?:` + g.String() + `)(?:\b|\W|$)`
		op = opBodyGlob
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return cond{op: opNever}
	}
	return cond{op: op, key: key, re: re}
}

// Evaluate returns what the user's rules say about ev: the actions of the
// first enabled rule whose conditions all hold. displayName is the user's
// display name in the room ("" for none). Events the user sent never
// notify (spec "Push Rules").
func (c *Compiled) Evaluate(ev *Event, room RoomContext, displayName string) Result {
	if ev.sender == c.user {
		return Result{}
	}
	for _, r := range c.rules {
		if r.legacy && ev.hasMentions {
			continue
		}
		if c.matches(r, ev, &room, displayName) {
			return Result{RuleID: r.id, Actions: r.actions, Notify: r.notify, Highlight: r.highlight}
		}
	}
	return Result{}
}

func (c *Compiled) matches(r *compiledRule, ev *Event, room *RoomContext, displayName string) bool {
	for i := range r.conds {
		if !r.conds[i].holds(c, ev, room, displayName) {
			return false
		}
	}
	return true
}

func (k *cond) holds(c *Compiled, ev *Event, room *RoomContext, displayName string) bool {
	switch k.op {
	case opMatchSelf:
		s, ok := ev.flat[k.key].(string)
		return ok && strings.EqualFold(s, c.user)
	case opContainsSelf:
		arr, _ := ev.flat[k.key].([]any)
		for _, v := range arr {
			if s, ok := v.(string); ok && s == c.user {
				return true
			}
		}
		return false
	case opBodySelfLocalpart:
		return ev.hasBody && c.localpart != "" && wordContains(ev.body, c.localpart)
	case opMatchLit:
		s, ok := ev.flat[k.key].(string)
		return ok && strings.EqualFold(s, k.lit)
	case opTypeLit:
		return strings.EqualFold(ev.typ, k.lit)
	case opMatchGlob:
		s, ok := ev.flat[k.key].(string)
		return ok && k.re.MatchString(s)
	case opBodyLit:
		return ev.hasBody && wordContains(ev.body, k.lit)
	case opBodyGlob:
		return ev.hasBody && k.re.MatchString(ev.body)
	case opIs:
		v, ok := ev.flat[k.key]
		return ok && v == k.value
	case opContains:
		arr, ok := ev.flat[k.key].([]any)
		if !ok {
			return false
		}
		for _, v := range arr {
			if v != nil && v == k.value {
				return true
			}
		}
		return false
	case opDisplayName:
		return displayName != "" && ev.hasBody && wordContains(ev.body, strings.ToLower(displayName))
	case opMemberCount:
		n := int64(room.MemberCount)
		switch k.cmp {
		case "<":
			return n < k.n
		case ">":
			return n > k.n
		case "<=":
			return n <= k.n
		case ">=":
			return n >= k.n
		}
		return n == k.n
	case opSenderPerm:
		need, ok := room.NotificationPower[k.lit]
		if !ok {
			need = 50
		}
		return room.SenderPower >= need
	case opRoomID:
		return ev.roomID == k.lit
	case opSender:
		return ev.sender == k.lit
	}
	return false
}

// wordContains reports whether lit (non-empty) occurs in s starting and
// ending at word boundaries, as the \b|\W regular expression of the glob
// path would find it.
func wordContains(s, lit string) bool {
	for off := 0; off <= len(s)-len(lit); {
		i := strings.Index(s[off:], lit)
		if i < 0 {
			return false
		}
		p := off + i
		q := p + len(lit)
		if (p == 0 || !isWord(s[p-1]) || !isWord(s[p])) && (q == len(s) || !isWord(s[q]) || !isWord(s[q-1])) {
			return true
		}
		off = p + 1
	}
	return false
}

// isWord reports whether b is one of the spec's word characters.
func isWord(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_'
}
