package push

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// ValidateRuleID checks a rule ID from a request path: the spec reserves
// IDs starting with a dot for server-default rules (checked by the
// callers that create rules) and forbids slashes and backslashes.
func ValidateRuleID(ruleID string) error {
	if ruleID == "" {
		return mxerr.Unknown.WithStatus(400).With("empty rule_id")
	}
	if strings.ContainsAny(ruleID, `/\`) {
		return mxerr.Unknown.WithStatus(400).With("rule_id may not contain slashes or backslashes")
	}
	return nil
}

// cleanActions checks an actions array and returns it without the
// historical dont_notify and coalesce actions, which the spec says to
// strip. An action is a string or an object with a string set_tweak.
func cleanActions(actions []json.RawMessage) ([]json.RawMessage, error) {
	if actions == nil {
		return nil, mxerr.InvalidParam.With("actions must be an array")
	}
	out := make([]json.RawMessage, 0, len(actions))
	for _, a := range actions {
		var s string
		if json.Unmarshal(a, &s) == nil {
			switch s {
			case "notify":
				out = append(out, a)
			case "dont_notify", "coalesce":
			default:
				return nil, mxerr.InvalidParam.With("unrecognised action %q", s)
			}
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(a, &obj) != nil || obj == nil {
			return nil, mxerr.InvalidParam.With("an action must be a string or an object")
		}
		var tweak string
		if json.Unmarshal(obj["set_tweak"], &tweak) != nil || tweak == "" {
			return nil, mxerr.InvalidParam.With("an action object must have a string set_tweak")
		}
		out = append(out, a)
	}
	return out, nil
}

// condition is the parsed form of a push condition.
type condition struct {
	Kind    string          `json:"kind"`
	Key     *string         `json:"key"`
	Pattern *string         `json:"pattern"`
	Is      *string         `json:"is"`
	Value   json.RawMessage `json:"value"`
}

// checkConditions checks the conditions of an override or underride rule:
// each must be an object with a string kind, and the parameters of the
// kinds the spec defines must be present and well-typed. Conditions of
// other kinds are kept: they never match (spec: "Conditions").
func checkConditions(conds []json.RawMessage) error {
	for _, raw := range conds {
		var c condition
		if err := json.Unmarshal(raw, &c); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return mxerr.InvalidParam.With("a condition must be an object with a string kind")
		}
		if c.Kind == "" {
			return mxerr.InvalidParam.With("condition without kind")
		}
		switch c.Kind {
		case "event_match":
			if c.Key == nil || c.Pattern == nil {
				return mxerr.InvalidParam.With("event_match needs a string key and pattern")
			}
		case "event_property_is", "event_property_contains":
			if c.Key == nil {
				return mxerr.InvalidParam.With("%s needs a string key", c.Kind)
			}
			if _, ok := scalar(c.Value); !ok {
				return mxerr.InvalidParam.With("%s needs a string, integer, boolean or null value", c.Kind)
			}
		case "room_member_count":
			if c.Is == nil {
				return mxerr.InvalidParam.With("room_member_count needs is")
			}
			if _, _, ok := parseIs(*c.Is); !ok {
				return mxerr.InvalidParam.With("invalid room_member_count is %q", *c.Is)
			}
		case "sender_notification_permission":
			if c.Key == nil {
				return mxerr.InvalidParam.With("sender_notification_permission needs a string key")
			}
		}
	}
	return nil
}

// scalar parses a non-compound canonical JSON value: a string, an integer
// in [-(2^53)+1, (2^53)-1], a boolean or null (as nullValue). An absent
// value is not one.
func scalar(raw json.RawMessage) (any, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	switch raw[0] {
	case 'n':
		return nullValue{}, string(raw) == "null"
	case 't', 'f':
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err == nil
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err == nil
	}
	return canonicalInt(string(raw))
}

// canonicalInt parses s as an integer in the canonical JSON range.
func canonicalInt(s string) (any, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxSafeInt || n < -maxSafeInt {
		return nil, false
	}
	return n, true
}

const maxSafeInt = 1<<53 - 1

// nullValue stands for JSON null among parsed event values, so that a null
// property and an absent one differ.
type nullValue struct{}

// parseIs parses a room_member_count "is": a decimal integer with an
// optional ==, <, >, <= or >= prefix (== when there is none).
func parseIs(is string) (op string, n int64, ok bool) {
	for _, p := range []string{"==", "<=", ">=", "<", ">"} {
		if rest, found := strings.CutPrefix(is, p); found {
			op, is = p, rest
			break
		}
	}
	if op == "" {
		op = "=="
	}
	n, err := strconv.ParseInt(is, 10, 64)
	if err != nil || is == "" || is[0] == '+' || is[0] == '-' {
		return "", 0, false
	}
	return op, n, true
}
