package pdu

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"
)

func TestCheckCanonical(t *testing.T) {
	tests := []struct {
		name   string
		json   string
		lax    bool // accepted by room versions 1-5
		strict bool // accepted by room versions 6+
	}{
		{"plain", `{"a":1,"b":"x","c":[true,false,null],"d":{}}`, true, true},
		{"whitespace and order are not our business", "{ \"b\": 1,\n \"a\": 2 }", true, true},
		{"max safe integer", `{"a":9007199254740991}`, true, true},
		{"min safe integer", `{"a":-9007199254740991}`, true, true},
		{"2^53", `{"a":9007199254740992}`, true, false},
		{"-(2^53)", `{"a":-9007199254740992}`, true, false},
		{"beyond int64", `{"a":100000000000000000000}`, true, false},
		{"float", `{"a":1.5}`, true, false},
		{"float that is an integer", `{"a":1.0}`, true, false},
		{"exponent", `{"a":1e3}`, true, false},
		{"capital exponent nested", `{"a":{"b":[1E3]}}`, true, false},
		{"negative zero", `{"a":-0}`, true, false},
		{"zero", `{"a":0}`, true, true},
		{"duplicate top-level key", `{"a":1,"a":1}`, false, false},
		{"duplicate nested key", `{"a":{"b":[{"c":1,"c":2}]}}`, false, false},
		{"duplicate key via escape", `{"a":1,"\u0061":2}`, false, false},
		{"same key in sibling objects", `{"a":{"c":1},"b":{"c":1}}`, true, true},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false, false},
		{"invalid UTF-8 in key", "{\"\xc3\":1}", false, false},
		{"lone surrogate escape", `{"a":"\ud800"}`, false, false},
		{"surrogate pair escape", `{"a":"\ud83d\ude00"}`, true, true},
		{"trailing value", `{"a":1}{}`, false, false},
		{"truncated", `{"a":`, false, false},
		{"empty", ``, false, false},
		{"syntax error", `{"a":01}`, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				v    id.RoomVersion
				want bool
			}{{"1", tc.lax}, {"5", tc.lax}, {"6", tc.strict}, {"12", tc.strict}} {
				err := CheckCanonical(c.v, []byte(tc.json))
				if (err == nil) != c.want {
					t.Errorf("v%s: err = %v, want accepted = %v", c.v, err, c.want)
				}
				if err != nil && !errors.Is(err, ErrNotCanonical) {
					t.Errorf("v%s: error %v does not wrap ErrNotCanonical", c.v, err)
				}
			}
		})
	}
}

func TestCheckProto(t *testing.T) {
	sk := func(s string) *string { return &s }
	for _, tc := range []struct {
		name string
		p    Proto
		ok   bool
	}{
		{"plain", Proto{Type: "m.room.message", Content: []byte(`{"body":"x","n":9007199254740991}`)}, true},
		{"no content", Proto{Type: "m.room.message"}, true},
		{"NUL in content stays escaped", Proto{Type: "m.room.message", Content: []byte(`{"body":"\u0000"}`)}, true},
		{"2^53", Proto{Type: "m.room.power_levels", StateKey: sk(""), Content: []byte(`{"users":{"@a:b":9007199254740992}}`)}, false},
		{"float even in a lax room version", Proto{Type: "m.room.message", Content: []byte(`{"n":1.5}`)}, false},
		{"1e400", Proto{Type: "m.room.message", Content: []byte(`{"n":1e400}`)}, false},
		{"negative zero", Proto{Type: "m.room.message", Content: []byte(`{"n":-0}`)}, false},
		{"not an object", Proto{Type: "m.room.message", Content: []byte(`[1]`)}, false},
		{"lone surrogate", Proto{Type: "m.room.message", Content: []byte(`{"b":"\udc00"}`)}, false},
		{"invalid UTF-8", Proto{Type: "m.room.message", Content: []byte("{\"b\":\"\xff\"}")}, false},
		{"duplicate keys", Proto{Type: "m.room.message", Content: []byte(`{"b":1,"b":2}`)}, false},
		{"type not UTF-8", Proto{Type: "m.\xff", Content: []byte(`{}`)}, false},
		{"NUL in the state key", Proto{Type: "m.room.topic", StateKey: sk("\x00"), Content: []byte(`{}`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckProto(tc.p)
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrBadContent) {
				t.Fatalf("CheckProto = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
