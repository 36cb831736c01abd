package spaces

import (
	"slices"
	"strings"
	"testing"
)

// TestChildOrder is the example of the spec's "Ordering of children within
// a space", plus orders that are not valid (out of range characters, more
// than 50 characters), which count as no order, and children that are not
// children (no via, a via that is not a list of strings).
func TestChildOrder(t *testing.T) {
	via := []any{"example.org"}
	child := func(roomID string, ts int64, content map[string]any) ChildEvent {
		return ChildEvent{Type: "m.space.child", StateKey: roomID, OriginServerTS: ts, Content: parseChildBody(content)}
	}
	cs := []ChildEvent{
		child("!b:example.org", 1640341000000, map[string]any{"order": " ", "via": via}),
		child("!a:example.org", 1640141000000, map[string]any{"order": "aaaa", "via": via}),
		child("!c:example.org", 1640841000000, map[string]any{"order": "first", "via": via}),
		child("!e:example.org", 1640641000000, map[string]any{"via": via}),
		child("!d:example.org", 1640741000000, map[string]any{"via": via}),
		// Invalid orders sort as none; same timestamp: by room ID.
		child("!g:example.org", 1640741000000, map[string]any{"order": "\x7f", "via": via}),
		child("!f:example.org", 1640741000000, map[string]any{"order": strings.Repeat("a", 51), "via": via}),
		child("!none:example.org", 1, map[string]any{}),
		child("!empty:example.org", 1, map[string]any{"via": []any{}}),
		child("!badvia:example.org", 1, map[string]any{"via": []any{"ok", 1}}),
		child("notaroom", 1, map[string]any{"via": via}),
	}
	var got []string
	for _, c := range validChildren(cs, false) {
		got = append(got, c.StateKey)
	}
	want := []string{"!b:example.org", "!a:example.org", "!c:example.org", "!e:example.org", "!d:example.org", "!f:example.org", "!g:example.org"}
	if !slices.Equal(got, want) {
		t.Errorf("order = %q, want %q", got, want)
	}
}
