package clientapi_test

// End-to-end tests of the push rules API (pushrules.yaml) and of how a
// change reaches the user's other devices through /sync account data.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/pushrules"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// pushCall sends one request to path under /_matrix/client/v3 (path is
// sent as given, already escaped) and returns the status and the decoded
// body.
func pushCall(t *testing.T, srv *mxtest.Server, cli *mautrix.Client, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+"/_matrix/client/v3"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cli.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

// wantPushErr checks that a request fails with status and errcode.
func wantPushErr(t *testing.T, srv *mxtest.Server, cli *mautrix.Client, method, path, body string, status int, errcode string) {
	t.Helper()
	got, resp := pushCall(t, srv, cli, method, path, body)
	if got != status || resp["errcode"] != errcode {
		t.Errorf("%s %s %s = %d %v, want %d %s", method, path, body, got, resp, status, errcode)
	}
}

func ruleIDs(rules []*pushrules.PushRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.RuleID)
	}
	return out
}

func TestPushRulesAPI(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		ok := func(method, path, body string) map[string]any {
			t.Helper()
			status, resp := pushCall(t, srv, alice, method, path, body)
			if status != 200 {
				t.Fatalf("%s %s %s = %d %v", method, path, body, status, resp)
			}
			return resp
		}

		// The defaults, in the spec's order, with the user's own ID.
		rules, err := alice.GetPushRules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ids := ruleIDs(rules.Override); len(ids) != 12 || ids[0] != ".m.rule.master" || ids[11] != ".m.rule.suppress_edits" {
			t.Fatalf("override rules = %v", ids)
		}
		if ids := ruleIDs(rules.Underride); !slices.Equal(ids, []string{".m.rule.call", ".m.rule.encrypted_room_one_to_one",
			".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"}) {
			t.Fatalf("underride rules = %v", ids)
		}
		if rules.Content[0].Pattern != alice.UserID.Localpart() {
			t.Fatalf("contains_user_name pattern = %q", rules.Content[0].Pattern)
		}
		all := ok("GET", "/pushrules/", "")
		if _, has := all["global"]; !has {
			t.Fatalf("GET /pushrules/ = %v", all)
		}

		// Create content rules, placed with before and after.
		ok("PUT", "/pushrules/global/content/cake", `{"pattern":"cake","actions":["notify",{"set_tweak":"sound","value":"cakealarm.wav"}]}`)
		ok("PUT", "/pushrules/global/content/nocake?before=cake", `{"pattern":"cake*lie","actions":["notify","dont_notify"]}`)
		ok("PUT", "/pushrules/global/content/middle?after=nocake", `{"pattern":"mid","actions":[]}`)
		ok("PUT", "/pushrules/global/content/first?before=nocake&after=cake", `{"pattern":"x","actions":[]}`)
		rules, _ = alice.GetPushRules(ctx)
		if ids := ruleIDs(rules.Content); !slices.Equal(ids, []string{"first", "nocake", "middle", "cake", ".m.rule.contains_user_name"}) {
			t.Fatalf("content order = %v", ids)
		}
		rule, err := alice.GetPushRule(ctx, "global", pushrules.ContentRule, "nocake")
		if err != nil || rule.Pattern != "cake*lie" || !rule.Enabled || rule.Default || len(rule.Actions) != 1 {
			t.Fatalf("nocake = %+v, %v (dont_notify must be stripped)", rule, err)
		}
		// A relative rule that does not exist, or is a server default.
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/y?before=nope", `{"pattern":"y","actions":[]}`, 400, "M_UNKNOWN")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/y?after=.m.rule.contains_user_name", `{"pattern":"y","actions":[]}`, 400, "M_UNKNOWN")

		// Override, room and sender rules through mautrix.
		err = alice.PutPushRule(ctx, "global", pushrules.OverrideRule, "beer", &mautrix.ReqPutPushRule{
			Actions: []*pushrules.PushAction{{Action: pushrules.ActionNotify}},
			Conditions: []*pushrules.PushCondition{
				{Kind: pushrules.KindEventMatch, Key: "content.body", Pattern: "beer"},
				{Kind: pushrules.KindRoomMemberCount, MemberCountCondition: "<=10"},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ok("PUT", "/pushrules/global/room/%21dj234r78wl45Gh4D%3Amatrix.org", `{"actions":[]}`)
		ok("PUT", "/pushrules/global/sender/%40spambot%3Amatrix.org", `{"actions":[]}`)
		rules, _ = alice.GetPushRules(ctx)
		if ids := ruleIDs(rules.Override); ids[0] != ".m.rule.master" || ids[1] != "beer" {
			t.Fatalf("user override rules must follow .m.rule.master: %v", ids)
		}
		room := ok("GET", "/pushrules/global/room/%21dj234r78wl45Gh4D%3Amatrix.org", "")
		if room["rule_id"] != "!dj234r78wl45Gh4D:matrix.org" || room["default"] != false || room["enabled"] != true {
			t.Fatalf("room rule = %v", room)
		}
		if _, has := room["conditions"]; has {
			t.Fatalf("room rule has conditions: %v", room)
		}
		if got := ok("GET", "/pushrules/global/override/beer", "")["conditions"]; len(got.([]any)) != 2 {
			t.Fatalf("beer conditions = %v", got)
		}

		// enabled and actions, on user rules and server defaults.
		if err := alice.SetPushRuleEnabled(ctx, "global", pushrules.UnderrideRule, ".m.rule.message", false); err != nil {
			t.Fatal(err)
		}
		if got := ok("GET", "/pushrules/global/underride/.m.rule.message/enabled", ""); got["enabled"] != false {
			t.Fatalf("enabled = %v", got)
		}
		ok("PUT", "/pushrules/global/content/cake/enabled", `{"enabled":false}`)
		ok("PUT", "/pushrules/global/content/cake", `{"pattern":"cakes","actions":["notify"]}`)
		if got := ok("GET", "/pushrules/global/content/cake", ""); got["enabled"] != false || got["pattern"] != "cakes" {
			t.Fatalf("an update must keep enabled: %v", got)
		}
		ok("PUT", "/pushrules/global/override/.m.rule.suppress_notices/actions", `{"actions":["notify",{"set_tweak":"highlight","value":false}]}`)
		if got := ok("GET", "/pushrules/global/override/.m.rule.suppress_notices/actions", ""); len(got["actions"].([]any)) != 2 {
			t.Fatalf("actions = %v", got)
		}
		rule, _ = alice.GetPushRule(ctx, "global", pushrules.OverrideRule, ".m.rule.suppress_notices")
		if !rule.Default || len(rule.Actions) != 2 || len(rule.Conditions) != 1 {
			t.Fatalf("suppress_notices = %+v", rule)
		}
		if got := ok("GET", "/pushrules/global/override/beer/actions", ""); len(got["actions"].([]any)) != 1 {
			t.Fatalf("beer actions = %v", got)
		}

		// Delete.
		if err := alice.DeletePushRule(ctx, "global", pushrules.ContentRule, "middle"); err != nil {
			t.Fatal(err)
		}
		wantPushErr(t, srv, alice, "GET", "/pushrules/global/content/middle", "", 404, "M_NOT_FOUND")
		wantPushErr(t, srv, alice, "DELETE", "/pushrules/global/content/middle", "", 404, "M_NOT_FOUND")
		wantPushErr(t, srv, alice, "GET", "/pushrules/global/content/middle/enabled", "", 404, "M_NOT_FOUND")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/middle/enabled", `{"enabled":true}`, 404, "M_NOT_FOUND")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/middle/actions", `{"actions":[]}`, 404, "M_NOT_FOUND")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/.m.rule.nope/enabled", `{"enabled":true}`, 404, "M_NOT_FOUND")
		// A default rule exists under its own kind only.
		wantPushErr(t, srv, alice, "GET", "/pushrules/global/underride/.m.rule.master", "", 404, "M_NOT_FOUND")

		// Bad input.
		wantPushErr(t, srv, alice, "GET", "/pushrules/global/bogus/x", "", 400, "M_UNKNOWN")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/bogus/x", `{"actions":[]}`, 400, "M_UNKNOWN")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/bogus/x/enabled", `{"enabled":true}`, 400, "M_UNKNOWN")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/.mine", `{"actions":[],"conditions":[]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/.m.rule.master", `{}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "DELETE", "/pushrules/global/override/.m.rule.master", "", 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/a%2Fb", `{"actions":[]}`, 400, "M_UNKNOWN")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/a%5Cb", `{"actions":[]}`, 400, "M_UNKNOWN")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"conditions":[]}`, 400, "M_BAD_JSON")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":"notify"}`, 400, "M_BAD_JSON")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":["bogus"]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":[{"value":1}]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":[],"conditions":[{"key":"type"}]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":[],"conditions":[{"kind":"event_match","key":"type"}]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":[],"conditions":[{"kind":"room_member_count","is":"lots"}]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":[],"conditions":[{"kind":"event_property_is","key":"k","value":{"a":1}}]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":[],"conditions":[null]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/x", `{"actions":[]}`, 400, "M_INVALID_PARAM")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/override/x", `{"actions":[`, 400, "M_NOT_JSON")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/cake/enabled", `{"enabled":"yes"}`, 400, "M_BAD_JSON")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/cake/enabled", `{}`, 400, "M_BAD_JSON")
		wantPushErr(t, srv, alice, "PUT", "/pushrules/global/content/cake/actions", `{"actions":["bogus"]}`, 400, "M_INVALID_PARAM")
		// m.push_rules is the server's to write.
		wantPushErr(t, srv, alice, "PUT", "/user/"+alice.UserID.String()+"/account_data/m.push_rules", `{"global":{}}`, 405, "M_BAD_JSON")

		// Unknown condition kinds are kept (they never match).
		ok("PUT", "/pushrules/global/underride/future", `{"actions":["notify"],"conditions":[{"kind":"org.example.future","x":[1]}]}`)
		if got := ok("GET", "/pushrules/global/underride/future", "")["conditions"].([]any)[0].(map[string]any); got["x"] == nil {
			t.Fatalf("unknown condition lost its fields: %v", got)
		}

		// Another user sees none of it, and the rules survive a restart.
		bob := srv.Client("bob")
		if r, _ := bob.GetPushRules(ctx); len(r.Content) != 1 || len(r.Room.Map) != 0 {
			t.Fatalf("bob's rules = %+v", r)
		}
		srv.Restart()
		if got := ok("GET", "/pushrules/global/underride/.m.rule.message/enabled", ""); got["enabled"] != false {
			t.Fatalf("after restart: %v", got)
		}
	})
}

func TestPushRulesReachOtherDevices(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		// Presence off: the laptop's first sync brings the user online,
		// which could wake its waiting sync before the phone's change.
		srv := mxtest.Start(t, engine, func(c *config.Config) { c.Presence.Enabled = false })
		phone := srv.Register("pushy", "password-pushy")
		laptop := srv.Login(phone.UserID, "password-pushy")
		first, err := laptop.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		// A user who never changed a rule gets the defaults in a full sync,
		// as from Synapse.
		if global := pushRulesEvent(t, first); global == nil || len(global.Override) != 12 || global.Override[0].Enabled {
			t.Fatalf("initial sync m.push_rules = %+v", global)
		}
		// The laptop waits; the phone's change must wake it.
		type result struct {
			resp *mautrix.RespSync
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := laptop.SyncRequest(ctx, 20000, first.NextBatch, "", false, "")
			done <- result{resp, err}
		}()
		if err := phone.SetPushRuleEnabled(ctx, "global", pushrules.OverrideRule, ".m.rule.master", true); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		global := pushRulesEvent(t, r.resp)
		if global == nil {
			t.Fatalf("no m.push_rules in the laptop's sync: %+v", r.resp.AccountData)
		}
		if m := global.Override[0]; m.RuleID != ".m.rule.master" || !m.Enabled {
			t.Fatalf("synced master rule = %+v", m)
		}
		if len(global.Underride) != 5 || len(global.Content) != 1 {
			t.Fatalf("synced ruleset is not the full ruleset: %+v", global)
		}

		// A second change arrives in the next incremental sync.
		err = phone.PutPushRule(ctx, "global", pushrules.ContentRule, "tea", &mautrix.ReqPutPushRule{
			Pattern: "tea", Actions: []*pushrules.PushAction{{Action: pushrules.ActionNotify}},
		})
		if err != nil {
			t.Fatal(err)
		}
		next, err := laptop.SyncRequest(ctx, 0, r.resp.NextBatch, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		global = pushRulesEvent(t, next)
		if global == nil || global.Content[0].RuleID != "tea" || global.Content[0].Pattern != "tea" {
			t.Fatalf("synced content rules = %+v", global)
		}
		// A full sync carries the latest ruleset too.
		full, err := laptop.SyncRequest(ctx, 0, "", "", true, "")
		if err != nil {
			t.Fatal(err)
		}
		if global = pushRulesEvent(t, full); global == nil || !global.Override[0].Enabled || global.Content[0].RuleID != "tea" {
			t.Fatalf("full sync ruleset = %+v", global)
		}
	})
}

// pushRulesEvent returns the global ruleset of the m.push_rules account
// data event in resp, or nil.
func pushRulesEvent(t *testing.T, resp *mautrix.RespSync) *pushrules.PushRuleset {
	t.Helper()
	for _, ev := range resp.AccountData.Events {
		if ev.Type.Type != "m.push_rules" {
			continue
		}
		var content struct {
			Global *pushrules.PushRuleset `json:"global"`
		}
		if err := json.Unmarshal(ev.Content.VeryRaw, &content); err != nil {
			t.Fatalf("m.push_rules content: %v", err)
		}
		return content.Global
	}
	return nil
}
