package pdu

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"
)

// mutate decodes an event, lets fn change it and encodes it again.
func mutate(t testing.TB, raw []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseIncomingFormat(t *testing.T) {
	v1Only := func(v id.RoomVersion) bool { return v == "1" || v == "2" }
	v3Plus := func(v id.RoomVersion) bool { return !v1Only(v) }
	v6Plus := func(v id.RoomVersion) bool { return v.ForbidFloatsAndBigInts() }
	all := func(id.RoomVersion) bool { return true }
	del := func(key string) func(m map[string]any) {
		return func(m map[string]any) { delete(m, key) }
	}
	set := func(key string, val any) func(m map[string]any) {
		return func(m map[string]any) { m[key] = val }
	}
	tests := []struct {
		name    string
		applies func(id.RoomVersion) bool
		create  bool // mutate the create event rather than a message
		fn      func(m map[string]any)
		raw     func(raw []byte) []byte // for byte-level changes
		want    error                   // nil: accepted
	}{
		{name: "valid message", applies: all, fn: func(map[string]any) {}},
		{name: "valid create", applies: all, create: true, fn: func(map[string]any) {}},
		{name: "missing type", applies: all, fn: del("type"), want: ErrBadFormat},
		{name: "missing sender", applies: all, fn: del("sender"), want: ErrBadFormat},
		{name: "missing content", applies: all, fn: del("content"), want: ErrBadFormat},
		{name: "missing hashes", applies: all, fn: del("hashes"), want: ErrBadFormat},
		{name: "missing signatures", applies: all, fn: del("signatures"), want: ErrBadFormat},
		{name: "missing depth", applies: all, fn: del("depth"), want: ErrBadFormat},
		{name: "missing origin_server_ts", applies: all, fn: del("origin_server_ts"), want: ErrBadFormat},
		{name: "missing auth_events", applies: all, fn: del("auth_events"), want: ErrBadFormat},
		{name: "missing prev_events", applies: all, fn: del("prev_events"), want: ErrBadFormat},
		{name: "missing room_id", applies: all, fn: del("room_id"), want: ErrBadFormat},
		{name: "type not a string", applies: all, fn: set("type", 5), want: ErrBadFormat},
		{name: "content an array", applies: all, fn: set("content", []any{}), want: ErrBadFormat},
		{name: "sender not a user ID", applies: all, fn: set("sender", "alice"), want: ErrBadFormat},
		{name: "room_id not a room ID", applies: all, fn: set("room_id", "#alias:a.test"), want: ErrBadFormat},
		{name: "negative depth", applies: all, fn: set("depth", -1), want: ErrBadFormat},
		{name: "depth a string", applies: all, fn: set("depth", "5"), want: ErrBadFormat},
		{name: "unsigned not an object", applies: all, fn: set("unsigned", "x"), want: ErrBadFormat},
		{name: "state_key too long", applies: all, fn: set("state_key", strings.Repeat("k", 256)), want: ErrBadFormat},
		{name: "state_key of 255 bytes", applies: all, fn: set("state_key", strings.Repeat("k", 255))},
		{name: "hash not base64", applies: all, fn: set("hashes", map[string]any{"sha256": "!!"}), want: ErrBadFormat},
		{name: "signatures not nested", applies: all, fn: set("signatures", map[string]any{"a.test": "sig"}), want: ErrBadFormat},
		{name: "too many prev_events", applies: v3Plus, fn: set("prev_events", manyIDs(21)), want: ErrBadFormat},
		{name: "20 prev_events", applies: v3Plus, fn: set("prev_events", manyIDs(20))},
		{name: "v3+ prev_events in v1 pair form", applies: v3Plus,
			fn: set("prev_events", []any{[]any{"$x:a.test", map[string]any{"sha256": strings.Repeat("A", 43)}}}), want: ErrBadFormat},
		{name: "prev_event not an event ID", applies: v3Plus, fn: set("prev_events", []any{"x"}), want: ErrBadFormat},
		{name: "v1 prev_events as plain IDs", applies: v1Only, fn: set("prev_events", []any{"$x:a.test"}), want: ErrBadFormat},
		{name: "v1 reference without hash", applies: v1Only, fn: set("prev_events", []any{[]any{"$x:a.test"}}), want: ErrBadFormat},
		{name: "v1 without event_id", applies: v1Only, fn: del("event_id"), want: ErrBadFormat},
		{name: "v1 event_id without server", applies: v1Only, fn: set("event_id", "$abc"), want: ErrBadFormat},
		{name: "v12 create with room_id", applies: func(v id.RoomVersion) bool { return v == "12" }, create: true,
			fn: set("room_id", "!x:a.test"), want: ErrBadFormat},
		{name: "pre-v12 create without room_id", applies: func(v id.RoomVersion) bool { return v != "12" }, create: true,
			fn: del("room_id"), want: ErrBadFormat},
		{name: "float in content", applies: v6Plus, fn: set("content", map[string]any{"n": json.Number("1.5")}), want: ErrNotCanonical},
		{name: "float in content tolerated before v6", applies: func(v id.RoomVersion) bool { return !v6Plus(v) },
			fn: set("content", map[string]any{"n": json.Number("1.5")})},
		{name: "1e3 in content", applies: v6Plus, fn: set("content", map[string]any{"n": json.Number("1e3")}), want: ErrNotCanonical},
		{name: "2^53 in content", applies: v6Plus, fn: set("content", map[string]any{"n": json.Number("9007199254740992")}), want: ErrNotCanonical},
		{name: "duplicate key", applies: all, fn: func(map[string]any) {},
			raw: func(raw []byte) []byte { return append([]byte(`{"type":"x",`), raw[1:]...) }, want: ErrNotCanonical},
		{name: "too large", applies: all, fn: set("content", map[string]any{"body": strings.Repeat("x", MaxSize)}), want: ErrTooLarge},
		{name: "large only through whitespace", applies: all, fn: func(map[string]any) {},
			raw: func(raw []byte) []byte { return append(bytes.Repeat([]byte(" "), MaxSize), raw...) }},
	}
	for _, v := range allVersions {
		r := newRoom(t, v)
		msg := r.message("hi")
		for _, tc := range tests {
			if !tc.applies(v) {
				continue
			}
			t.Run("v"+string(v)+"/"+tc.name, func(t *testing.T) {
				base := msg
				if tc.create {
					base = r.events[r.create]
				}
				raw := mutate(t, base.JSON(), tc.fn)
				if tc.raw != nil {
					raw = tc.raw(raw)
				}
				_, err := ParseIncoming(v, raw)
				if tc.want == nil && err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			})
		}
	}
	if _, err := ParseIncoming("13", []byte(`{}`)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("unknown room version: %v", err)
	}
}

func manyIDs(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = "$event" + strings.Repeat("x", i)
	}
	return out
}

func TestVerifySignaturesAndHashes(t *testing.T) {
	type check struct {
		name       string
		ev         func(r *room) *Event
		keys       []signer
		wantSigOK  bool
		wantHashOK bool
	}
	forge := func(r *room, ev *Event, fn func(m map[string]any)) *Event {
		r.t.Helper()
		raw := mutate(r.t, ev.JSON(), fn)
		out, err := ParseIncoming(r.v, raw)
		if err != nil {
			r.t.Fatalf("parsing forged event: %v", err)
		}
		return out
	}
	checks := []check{
		{name: "valid", ev: func(r *room) *Event { return r.message("hi") }, keys: []signer{serverA}, wantSigOK: true, wantHashOK: true},
		{name: "forged signature", ev: func(r *room) *Event {
			return forge(r, r.message("hi"), func(m map[string]any) {
				sig := m["signatures"].(map[string]any)["a.test"].(map[string]any)
				s := sig["ed25519:1"].(string)
				sig["ed25519:1"] = flipChar(s)
			})
		}, keys: []signer{serverA}, wantHashOK: true},
		{name: "signature from an unknown key", ev: func(r *room) *Event { return r.message("hi") }, keys: nil, wantHashOK: true},
		{name: "signed with another server's key", ev: func(r *room) *Event { return r.message("hi") },
			keys: []signer{{name: "a.test", keyID: "ed25519:1", priv: serverB.priv}}, wantHashOK: true},
		{name: "body changed after signing", ev: func(r *room) *Event {
			// The signature covers the redacted form, so it still holds;
			// the content hash does not.
			return forge(r, r.message("hi"), func(m map[string]any) {
				m["content"].(map[string]any)["body"] = "bye"
			})
		}, keys: []signer{serverA}, wantSigOK: true},
		{name: "membership changed after signing", ev: func(r *room) *Event {
			ev := r.add(serverA, "m.room.member", ptr("@alice:a.test"), "@alice:a.test", `{"membership":"join"}`, []id.EventID{r.create})
			return forge(r, ev, func(m map[string]any) {
				m["content"].(map[string]any)["membership"] = "leave"
			})
		}, keys: []signer{serverA}},
		{name: "sender's server did not sign", ev: func(r *room) *Event {
			return r.add(serverA, "m.room.message", nil, "@bob:b.test", `{"body":"x"}`, []id.EventID{r.create})
		}, keys: []signer{serverA, serverB}, wantHashOK: true},
		{name: "sender's server signed too", ev: func(r *room) *Event {
			ev := r.add(serverA, "m.room.message", nil, "@bob:b.test", `{"body":"x"}`, []id.EventID{r.create})
			if err := ev.Sign(serverB.name, serverB.keyID, serverB.priv); err != nil {
				r.t.Fatal(err)
			}
			return ev
		}, keys: []signer{serverA, serverB}, wantSigOK: true, wantHashOK: true},
		{name: "restricted join without the authoriser's signature", ev: func(r *room) *Event {
			return r.add(serverA, "m.room.member", ptr("@alice:a.test"), "@alice:a.test",
				`{"membership":"join","join_authorised_via_users_server":"@carol:b.test"}`, []id.EventID{r.create})
		}, keys: []signer{serverA, serverB}, wantHashOK: true},
		{name: "restricted join with the authoriser's signature", ev: func(r *room) *Event {
			ev := r.add(serverA, "m.room.member", ptr("@alice:a.test"), "@alice:a.test",
				`{"membership":"join","join_authorised_via_users_server":"@carol:b.test"}`, []id.EventID{r.create})
			if err := ev.Sign(serverB.name, serverB.keyID, serverB.priv); err != nil {
				r.t.Fatal(err)
			}
			return forge(r, ev, func(map[string]any) {})
		}, keys: []signer{serverA, serverB}, wantSigOK: true, wantHashOK: true},
		{name: "third-party invite sent by another server", ev: func(r *room) *Event {
			return r.add(serverA, "m.room.member", ptr("@dave:a.test"), "@bob:b.test",
				`{"membership":"invite","third_party_invite":{"display_name":"d","signed":{"mxid":"@dave:a.test","token":"t","signatures":{}}}}`,
				[]id.EventID{r.create})
		}, keys: []signer{serverA}, wantSigOK: true, wantHashOK: true},
	}
	for _, v := range allVersions {
		for _, c := range checks {
			t.Run("v"+string(v)+"/"+c.name, func(t *testing.T) {
				r := newRoom(t, v)
				ev := c.ev(r)
				wantSig := c.wantSigOK
				switch {
				case c.name == "sender's server did not sign" && (v == "1" || v == "2"):
					// Still lacks b.test (the sender), though a.test made the ID.
				case c.name == "restricted join without the authoriser's signature" && !v.RestrictedJoins():
					wantSig = true // no such rule before v8
				}
				err := ev.VerifySignatures(keysOf(c.keys...))
				if (err == nil) != wantSig {
					t.Fatalf("VerifySignatures = %v, want ok = %v (required %v)", err, wantSig, ev.RequiredSigners())
				}
				if err != nil && !errors.Is(err, ErrBadSignature) {
					t.Fatalf("error %v does not wrap ErrBadSignature", err)
				}
				if got := ev.VerifyContentHash(); got != c.wantHashOK {
					t.Fatalf("VerifyContentHash = %v, want %v", got, c.wantHashOK)
				}
			})
		}
	}
}

func TestRequiredSigners(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			r := newRoom(t, v)
			// Built by a.test, so a v1 event ID names a.test.
			msg := r.add(serverA, "m.room.message", nil, "@bob:b.test", `{"body":"x"}`, []id.EventID{r.create})
			want := "b.test"
			if v == "1" || v == "2" {
				want = "b.test,a.test"
			}
			if got := strings.Join(msg.RequiredSigners(), ","); got != want {
				t.Fatalf("message: %s, want %s", got, want)
			}
			inv := r.add(serverA, "m.room.member", ptr("@dave:a.test"), "@bob:b.test",
				`{"membership":"invite","third_party_invite":{"signed":{"mxid":"@dave:a.test","token":"t"}}}`, []id.EventID{r.create})
			want = ""
			if v == "1" || v == "2" {
				want = "a.test"
			}
			if got := strings.Join(inv.RequiredSigners(), ","); got != want {
				t.Fatalf("third-party invite: %q, want %q", got, want)
			}
			join := r.add(serverA, "m.room.member", ptr("@alice:a.test"), "@alice:a.test",
				`{"membership":"join","join_authorised_via_users_server":"@carol:c.test"}`, []id.EventID{r.create})
			want = "a.test"
			if v.RestrictedJoins() {
				want = "a.test,c.test"
			}
			if got := strings.Join(join.RequiredSigners(), ","); got != want {
				t.Fatalf("restricted join: %q, want %q", got, want)
			}
		})
	}
}

func flipChar(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestRedacted(t *testing.T) {
	for _, v := range allVersions {
		t.Run("v"+string(v), func(t *testing.T) {
			r := newRoom(t, v)
			msg := r.message("secret")
			red := msg.Redacted()
			raw := red.JSON()
			if red.ID != msg.ID || gjson.GetBytes(raw, "content.body").Exists() {
				t.Fatalf("redacted %s: %s", red.ID, raw)
			}
			// A redacted copy still parses to the same ID and carries valid
			// signatures, but its content hash no longer matches.
			got, err := ParseIncoming(v, raw)
			if err != nil {
				t.Fatalf("parsing redacted copy: %v", err)
			}
			if got.ID != msg.ID {
				t.Fatalf("redacted copy has ID %s, want %s", got.ID, msg.ID)
			}
			if err := got.VerifySignatures(keysOf(serverA)); err != nil {
				t.Fatalf("redacted copy: %v", err)
			}
			if got.VerifyContentHash() {
				t.Fatal("redacted copy passes the content hash check")
			}
			if v == "1" || v == "2" {
				if !gjson.GetBytes(raw, "event_id").Exists() || !gjson.GetBytes(raw, "prev_events.0.1.sha256").Exists() {
					t.Fatalf("v%s redaction lost event_id or the reference form: %s", v, raw)
				}
			}
			// Power levels keep their auth-relevant keys.
			pl := r.add(serverA, "m.room.power_levels", ptr(""), "@alice:a.test", `{"users":{"@alice:a.test":100},"ban":50,"notifications":{"room":50}}`, []id.EventID{r.create})
			plRaw := pl.Redacted().JSON()
			if !gjson.GetBytes(plRaw, "content.users").Exists() || !gjson.GetBytes(plRaw, "content.ban").Exists() || gjson.GetBytes(plRaw, "content.notifications").Exists() {
				t.Fatalf("redacted power levels: %s", gjson.GetBytes(plRaw, "content").Raw)
			}
		})
	}
}

func TestV1BuildNeedsReferencedEvents(t *testing.T) {
	_, err := Build(Proto{Type: "m.room.message", Sender: "@a:a.test", RoomID: "!r:a.test"}, BuildArgs{
		Version: "1", PrevEvents: []id.EventID{"$x:a.test"}, ServerName: "a.test", KeyID: "ed25519:1", Key: serverA.priv,
	})
	if err == nil {
		t.Fatal("built a v1 event without the referenced events")
	}
}

func TestV1ParseTrustedChecksEventID(t *testing.T) {
	r := newRoom(t, "1")
	msg := r.message("hi")
	if _, err := ParseTrusted("1", "$other:a.test", msg.JSON()); err == nil {
		t.Fatal("stored v1 event with a different event_id was accepted")
	}
	if ev, err := ParseTrusted("1", msg.ID, msg.JSON()); err != nil || len(ev.PrevEvents) != 1 {
		t.Fatalf("ParseTrusted: %v %v", ev, err)
	}
}
