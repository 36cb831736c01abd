package homeserver_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// The bad-input test sends malformed bodies, path parameters and query
// parameters to every route the server registers (homeserver.Routes), so
// routes added later are covered without touching the test. Any 5xx, an
// answer slower than badInputTimeout (a hang), or a 4xx that is not a
// Matrix error (or a user-interactive auth challenge) fails it.

const (
	badInputTimeout = 10 * time.Second
	badInputBodyMax = 96 << 10 // the server's body limit in this test
	badInputWorkers = 6
)

// badJSONValues replace a field of a valid-ish body, or every field of the
// generic body: each wrong type, and the numbers canonical JSON forbids.
var badJSONValues = []string{
	`"s"`, `""`, `1`, `-1`, `[]`, `[1]`, `{}`, `{"a":1}`, `null`, `true`,
	`18446744073709551616`, `9007199254740992`, `-9007199254740993`,
	`1e400`, `-0`, `1.5`, `"\u0000"`, `"` + strings.Repeat("x", 5000) + `"`, `"\ud800"`,
}

// mutationValues replace each field of a valid-ish body: fewer than
// badJSONValues, since a mutated body that is still valid does real work
// (a whole room for createRoom).
var mutationValues = []string{
	`"s"`, `1`, `[]`, `{}`, `null`, `true`, `9007199254740992`, `1e400`, `-0`, `1.5`, `"\u0000"`, `"\ud800"`,
}

// commonFields are the top-level keys of request bodies across the
// client, federation and admin APIs; the generic body sets all of them to
// one wrong value at a time.
var commonFields = []string{
	"body", "msgtype", "name", "topic", "membership", "reason", "user_id", "room_id", "event_id",
	"displayname", "avatar_url", "users", "events", "state_default", "ban", "kick", "redact",
	"invite", "users_default", "events_default", "notifications", "visibility", "preset",
	"room_alias_name", "invite_3pid", "initial_state", "creation_content",
	"power_level_content_override", "room_version", "is_direct", "type", "state_key", "content",
	"password", "new_password", "logout_devices", "auth", "username", "device_id",
	"initial_device_display_name", "inhibit_login", "refresh_token", "identifier", "medium",
	"address", "token", "devices", "device_keys", "one_time_keys", "fallback_keys", "timeout",
	"messages", "typing", "m.fully_read", "m.read", "m.read.private", "thread_id", "filter",
	"limit", "since", "server", "third_party_instance_id", "include_all_networks", "algorithm",
	"auth_data", "version", "rooms", "sessions", "first_message_index", "forwarded_count",
	"is_verified", "session_data", "master_key", "self_signing_key", "user_signing_key",
	"signatures", "keys", "usage", "pdus", "edus", "origin", "origin_server_ts", "pdu", "event",
	"invite_room_state", "earliest_events", "latest_events", "min_depth", "server_keys", "nonce",
	"mac", "admin", "user_type", "alias", "room_alias", "servers", "via", "account_data",
	"presence", "event_fields", "event_format", "room", "not_senders", "not_types", "senders",
	"types", "url", "info", "kind", "app_id", "pushkey", "app_display_name", "device_display_name", "lang", "profile_tag", "append", "data", "format", "m.relates_to", "one_time_key", "txn_id", "ts", "tags", "order",
	"guest_access_token",
}

// goodBodies are valid-ish bodies for some routes, keyed by the end of
// the route's path (SERVER stands for the server's name); every field of them, at any depth, is replaced by
// each of badJSONValues in turn, so wrong types reach nested decoding and
// event building.
var goodBodies = map[string]string{
	"/createRoom": `{"name":"n","topic":"t","preset":"public_chat","visibility":"private","is_direct":false,
		"room_version":"12","invite":["@nobody:SERVER"],
		"initial_state":[{"type":"m.room.guest_access","state_key":"","content":{"guest_access":"can_join"}}],
		"power_level_content_override":{"users_default":0,"events":{"m.room.name":50},"notifications":{"room":50}},
		"creation_content":{"m.federate":true,"type":"m.space"}}`,
	"simplified_msc3575/sync": `{"conn_id":"c","txn_id":"t","lists":{"a":{"ranges":[[0,9]],"timeline_limit":1,
		"required_state":[["m.room.member","$LAZY"],["*","*"]],"filters":{"is_dm":true,"is_encrypted":false,"is_invite":false,
		"spaces":["!s:SERVER"],"room_types":[null,"m.space"],"not_room_types":["x"],"tags":["m.favourite"],"not_tags":["m.lowpriority"]}}},
		"room_subscriptions":{"!r:SERVER":{"timeline_limit":1,"required_state":[["m.room.name",""]]}},"unsubscribe_rooms":["!u:SERVER"],
		"extensions":{"to_device":{"enabled":true,"since":"1","limit":5},"e2ee":{"enabled":true},
		"account_data":{"enabled":true,"lists":["a"],"rooms":["*"]},"receipts":{"enabled":true},"typing":{"enabled":true}}}`,
	"/send/{eventType}/{txnId}":                         `{"msgtype":"m.text","body":"hi","m.relates_to":{"rel_type":"m.thread","event_id":"$x"}}`,
	"/state/{eventType}/{stateKey...}":                  `{"users":{"@a:SERVER":50},"users_default":0,"events":{"m.room.name":50},"ban":50,"notifications":{"room":50}}`,
	"/profile/{userId}/{keyName}":                       `{"displayname":"d","avatar_url":"mxc://localhost/a"}`,
	"/join/{roomIdOrAlias}":                             `{"reason":"r"}`,
	"/knock/{roomIdOrAlias}":                            `{"reason":"r"}`,
	"/rooms/{roomId}/join":                              `{"reason":"r"}`,
	"/rooms/{roomId}/invite":                            `{"user_id":"@nobody:SERVER","reason":"r"}`,
	"/rooms/{roomId}/kick":                              `{"user_id":"@nobody:SERVER","reason":"r"}`,
	"/rooms/{roomId}/ban":                               `{"user_id":"@nobody:SERVER","reason":"r"}`,
	"/rooms/{roomId}/leave":                             `{"reason":"r"}`,
	"/rooms/{roomId}/upgrade":                           `{"new_version":"12","additional_creators":["@a:SERVER"]}`,
	"/rooms/{roomId}/read_markers":                      `{"m.fully_read":"$x","m.read":"$x"}`,
	"/receipt/{receiptType}/{eventId}":                  `{"thread_id":"main"}`,
	"/typing/{userId}":                                  `{"typing":true,"timeout":1000}`,
	"/register":                                         `{"username":"u","password":"p","auth":{"type":"m.login.dummy"},"initial_device_display_name":"d"}`,
	"/login":                                            `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"u"},"password":"p"}`,
	"/filter":                                           `{"room":{"timeline":{"limit":10,"types":["m.room.message"]},"rooms":["!a:b"]},"event_fields":["content"],"presence":{"limit":1}}`,
	"/keys/upload":                                      `{"one_time_keys":{"signed_curve25519:A":{"key":"k","signatures":{}}},"fallback_keys":{}}`,
	"/keys/query":                                       `{"device_keys":{"@a:SERVER":[]},"timeout":0}`,
	"/keys/claim":                                       `{"one_time_keys":{"@a:SERVER":{"D":"signed_curve25519"}},"timeout":0}`,
	"/sendToDevice/{eventType}/{txnId}":                 `{"messages":{"@a:SERVER":{"*":{"k":"v"}}}}`,
	"/room_keys/version":                                `{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{"public_key":"k"}}`,
	"/room_keys/keys/{roomId}/{sessionId}":              `{"first_message_index":0,"forwarded_count":0,"is_verified":false,"session_data":{}}`,
	"/publicRooms":                                      `{"limit":10,"since":"x","filter":{"generic_search_term":"a"}}`,
	"/directory/room/{roomAlias}":                       `{"room_id":"!a:SERVER"}`,
	"/directory/list/room/{roomId}":                     `{"visibility":"public"}`,
	"/account/password":                                 `{"new_password":"p","logout_devices":false}`,
	"/delete_devices":                                   `{"devices":["D"]}`,
	"/_matrix/federation/v1/send/{txnId}":               `{"origin":"o","origin_server_ts":1,"pdus":[],"edus":[{"edu_type":"m.typing","content":{"room_id":"!a:b","user_id":"@a:b","typing":true}}]}`,
	"/_matrix/federation/v1/user/keys/query":            `{"device_keys":{"@a:SERVER":[]}}`,
	"/_matrix/federation/v1/user/keys/claim":            `{"one_time_keys":{"@a:SERVER":{"D":"signed_curve25519"}}}`,
	"/get_missing_events/{roomId}":                      `{"earliest_events":["$a"],"latest_events":["$b"],"limit":10,"min_depth":0}`,
	"/_matrix/key/v2/query":                             `{"server_keys":{"SERVER":{"ed25519:a":{"minimum_valid_until_ts":1}}}}`,
	"/_synapse/admin/v1/register":                       `{"nonce":"n","username":"u","password":"p","admin":false,"mac":"m"}`,
	"/_matrix/federation/v1/publicRooms":                `{"limit":10,"filter":{"generic_search_term":"a"}}`,
	"/keys/device_signing/upload":                       `{"master_key":{"user_id":"@a:SERVER","usage":["master"],"keys":{"ed25519:k":"k"}}}`,
	"/keys/signatures/upload":                           `{"@a:SERVER":{"D":{"user_id":"@a:SERVER","device_id":"D","keys":{},"signatures":{}}}}`,
	"/user/{userId}/account_data/{type}":                `{"a":{"b":1}}`,
	"/rooms/{roomId}/redact/{eventId}/{txnId}":          `{"reason":"r"}`,
	"/devices/{deviceId}":                               `{"display_name":"d"}`,
	"/pushers/set":                                      `{"kind":"http","app_id":"a","pushkey":"k","app_display_name":"A","device_display_name":"D","lang":"en","profile_tag":"t","append":false,"data":{"url":"https://p.example/_matrix/push/v1/notify","format":"event_id_only"}}`,
	"/user/{userId}/rooms/{roomId}/account_data/{type}": `{"a":1}`,
}

// badQueries are appended, one at a time, to every route's good path.
var badQueries = []string{
	"limit=-1", "limit=abc", "limit=99999999999999999999", "limit=1e400", "from=garbage", "to=garbage",
	"since=garbage", "dir=x", "timeout=-5", "timeout=abc", "filter=garbage", "filter=%7B%22room%22%3A1%7D",
	"filter=%5B%5D", "full_state=maybe", "set_presence=x", "server=%00", "server=a%3Ab", "server_name=a%3Ab", "via=%00",
	"ver=x", "event_id=garbage", "room_alias=%23", "user_id=%40", "field=%00", "v=%FF", "access_token=%00",
	"limit=1&limit=2", "%zz=1", "from=s99999999999999999999_1",
	"max_depth=-1", "max_depth=abc", "suggested_only=maybe", "kind=x",
}

// pathValues are the bad values put in place of each path parameter, one
// at a time (already escaped for the path); %s is the server name.
var pathValues = []string{
	"", "%00", "%23", "%21", "%40", "%24", "no_sigil", "%21nocolon", "%40a%3Ab%3Ac", "%21x%3Aa%3Ab",
	"%23x%3Aa%3Ab", "%40x%3A", "%23x%3A%00", "%21" + strings.Repeat("x", 300) + "%3A%s",
	"%40" + strings.Repeat("x", 300) + "%3A%s", "%24" + strings.Repeat("x", 300),
	"%21unknown%3A%s", "%40unknown%3A%s", "%24unknown", "%23unknown%3A%s", "%FF", "%ED%A0%80", "%2F", "..",
}

// badRoute is one route of the server's table, with its parameters.
type badRoute struct {
	method string
	path   string // pattern path, {…} parameters and all
	fed    bool   // signed with X-Matrix rather than an access token
}

func (r badRoute) params() []string {
	var ps []string
	for _, seg := range strings.Split(r.path, "/") {
		if strings.HasPrefix(seg, "{") && seg != "{$}" {
			ps = append(ps, strings.Trim(seg, "{}."))
		}
	}
	return ps
}

// fill builds the request path from the pattern with each parameter's
// value (already escaped).
func (r badRoute) fill(values map[string]string) string {
	segs := strings.Split(r.path, "/")
	for i, seg := range segs {
		switch {
		case seg == "{$}":
			segs[i] = ""
		case strings.HasPrefix(seg, "{"):
			segs[i] = values[strings.Trim(seg, "{}.")]
		}
	}
	return strings.Join(segs, "/")
}

// badRequest is one request of the test and the route it targets.
type badRequest struct {
	route badRoute
	what  string
	path  string
	query string
	body  []byte
	token string
}

func TestBadInputNever5xx(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		start := time.Now()
		hs := mxtest.Federation(t, engine, 1, func(c *config.Config) { c.MaxRequestBytes = badInputBodyMax })
		srv := hs[0]
		server := srv.Config.ServerName
		evil := startEvil(t, srv.TestCA)
		ctx := context.Background()

		// The federation routes' good values: a public room the evil
		// server has joined, and an event in it.
		owner := srv.Client("owner")
		fedRoom, err := owner.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		fedMsg, err := owner.SendText(ctx, fedRoom.RoomID, "hello")
		if err != nil {
			t.Fatal(err)
		}
		evil.join(t, server, fedRoom.RoomID)

		var routes []badRoute
		patterns := srv.Routes()
		for _, p := range patterns {
			method, path, ok := strings.Cut(p, " ")
			if !ok {
				t.Fatalf("route pattern %q has no method", p)
			}
			// The r0 prefix serves the v3 handlers again.
			if strings.HasPrefix(path, "/_matrix/client/r0/") &&
				slices.Contains(patterns, method+" /_matrix/client/v3/"+strings.TrimPrefix(path, "/_matrix/client/r0/")) {
				continue
			}
			routes = append(routes, badRoute{method: method, path: path, fed: strings.HasPrefix(path, "/_matrix/federation/")})
		}
		if len(routes) < 50 {
			t.Fatalf("only %d routes listed: %v", len(routes), patterns)
		}

		client := &http.Client{Timeout: badInputTimeout}
		var sent, fedOK, clientOK atomic.Int64
		var mu sync.Mutex
		var failures []string
		fail := func(req badRequest, status int, detail string) {
			mu.Lock()
			defer mu.Unlock()
			failures = append(failures, fmt.Sprintf("%s %s (%s): %d %s", req.route.method, req.route.path, req.what, status, detail))
		}
		var txn atomic.Int64
		do := func(req badRequest) {
			sent.Add(1)
			target := srv.URL + req.path
			query := req.query
			if !strings.Contains(query, "timeout=") {
				// Long-poll routes must answer at once.
				query = strings.TrimPrefix(query+"&timeout=0", "&")
			}
			target += "?" + query
			body := bytes.ReplaceAll(req.body, []byte("SERVER"), []byte(server))
			hreq, err := http.NewRequest(req.route.method, target, bytes.NewReader(body))
			if err != nil {
				return // not a request a client can send
			}
			if req.route.fed {
				hreq.Header.Set("Authorization", evil.xMatrix(req.route.method, hreq.URL.RequestURI(), server, body))
			} else if req.token != "" {
				hreq.Header.Set("Authorization", "Bearer "+req.token)
			}
			hreq.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(hreq)
			if err != nil {
				fail(req, 0, err.Error())
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			if resp.StatusCode/100 == 2 {
				if req.route.fed {
					fedOK.Add(1)
				} else {
					clientOK.Add(1)
				}
			}
			if resp.StatusCode >= 400 && resp.StatusCode < 500 {
				var eb struct {
					Errcode string          `json:"errcode"`
					Flows   json.RawMessage `json:"flows"` // user-interactive auth
				}
				if json.Unmarshal(raw, &eb) != nil || !strings.HasPrefix(eb.Errcode, "M_") && eb.Flows == nil {
					fail(req, resp.StatusCode, "4xx without a Matrix error body: "+string(raw))
				}
			}
			if resp.StatusCode >= 500 {
				fail(req, resp.StatusCode, string(raw))
			}
		}

		// Each route gets its own user, room and message, so that routes
		// that log out, leave or change state do not spoil the others.
		// Each route that may change state gets its own user, room and
		// message, so that routes that log out, leave or change state do
		// not spoil the others; GET routes share one.
		type fixture struct {
			cli   *mautrix.Client
			room  id.RoomID
			alias string
			msg   id.EventID
		}
		newFixture := func() (*fixture, error) {
			f := &fixture{cli: srv.Client("bad"), alias: fmt.Sprintf("bad%d", txn.Add(1))}
			room, err := f.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: f.alias})
			if err != nil {
				return nil, err
			}
			msg, err := f.cli.SendText(ctx, room.RoomID, "hello")
			if err != nil {
				return nil, err
			}
			f.room, f.msg = room.RoomID, msg.EventID
			return f, nil
		}
		shared, err := newFixture()
		if err != nil {
			t.Fatal(err)
		}
		reqCh := make(chan badRequest, 1024)
		runRoute := func(rt badRoute) {
			fx := shared
			if rt.method != http.MethodGet {
				var err error
				if fx, err = newFixture(); err != nil {
					fail(badRequest{route: rt, what: "fixture"}, 0, err.Error())
					return
				}
			}
			cli, alias := fx.cli, fx.alias
			esc := url.PathEscape
			good := map[string]string{
				"roomId": esc(fx.room.String()), "roomIdOrAlias": esc(fx.room.String()),
				"roomAlias": esc("#" + alias + ":" + server), "userId": esc(cli.UserID.String()),
				"eventId": esc(fx.msg.String()), "deviceId": esc(cli.DeviceID.String()),
				"eventType": "m.room.topic", "stateKey": "", "keyName": "displayname", "type": "m.test",
				"filterId": "0", "receiptType": "m.read", "version": "1", "sessionId": "s",
				"serverName": esc(server),
			}
			if rt.fed {
				good["roomId"], good["eventId"] = esc(fedRoom.RoomID.String()), esc(fedMsg.EventID.String())
				if strings.Contains(rt.path, "/make_") {
					good["userId"] = esc("@mallory:" + evil.name)
				}
			}
			if strings.Contains(rt.path, "/send/") || strings.Contains(rt.path, "/sendToDevice/") {
				good["eventType"] = "m.room.message"
			}
			withTxn := func(values map[string]string) map[string]string {
				v := map[string]string{}
				for k, s := range values {
					v[k] = s
				}
				if _, ok := v["txnId"]; !ok {
					v["txnId"] = fmt.Sprintf("t%d", txn.Add(1))
				}
				return v
			}
			var reqs []badRequest
			add := func(what string, values map[string]string, query string, body []byte) {
				reqs = append(reqs, badRequest{route: rt, what: what, path: rt.fill(withTxn(values)), query: query, body: body, token: cli.AccessToken})
			}

			// Bad path parameters, one at a time.
			for _, p := range rt.params() {
				for _, bad := range pathValues {
					values := withTxn(good)
					values[p] = strings.ReplaceAll(bad, "%s", esc(server))
					add("path "+p+"="+bad, values, "", []byte(`{}`))
				}
			}
			// Bad query parameters; routes that take a body are given fewer.
			queries := badQueries
			if rt.method != http.MethodGet {
				queries = badQueries[:4]
			}
			for _, q := range queries {
				add("query "+q, good, q, nil)
			}
			if rt.method == http.MethodPut || rt.method == http.MethodPost || rt.method == http.MethodDelete {
				for what, body := range badBodies() {
					add("body "+what, good, "", body)
				}
				if gb := goodBodyFor(rt); gb != "" {
					for what, body := range mutations(t, gb) {
						add("mutated "+what, good, "", body)
						if strings.HasSuffix(rt.path, "/state/{eventType}/{stateKey...}") {
							pl := withTxn(good)
							pl["eventType"] = "m.room.power_levels"
							add("power levels "+what, pl, "", body)
						}
					}
				}
			}
			// Event content the room version's canonical JSON forbids.
			if strings.HasSuffix(rt.path, "/send/{eventType}/{txnId}") || strings.HasSuffix(rt.path, "/state/{eventType}/{stateKey...}") {
				for _, n := range []string{`9007199254740992`, `-9007199254740992`, `18446744073709551616`, `1e400`, `1.5`, `-0`, `1E2`} {
					pl := withTxn(good)
					pl["eventType"] = "m.room.power_levels"
					add("power level "+n, pl, "", []byte(`{"users":{"`+cli.UserID.String()+`":`+n+`}}`))
				}
			}
			for _, r := range reqs {
				reqCh <- r
			}
		}

		// Fixtures are made by some workers and requests sent by others,
		// so that a route with many requests (createRoom's mutations)
		// does not hold up the end.
		var senders sync.WaitGroup
		for range badInputWorkers {
			senders.Go(func() {
				for r := range reqCh {
					do(r)
				}
			})
		}
		work := make(chan badRoute)
		var makers sync.WaitGroup
		for range badInputWorkers / 2 {
			makers.Go(func() {
				for rt := range work {
					runRoute(rt)
				}
			})
		}
		for _, rt := range routes {
			work <- rt
		}
		close(work)
		makers.Wait()
		close(reqCh)
		senders.Wait()
		t.Logf("%d routes, %d requests in %v", len(routes), sent.Load(), time.Since(start).Round(time.Millisecond))
		// Some requests must succeed, or the fixtures, tokens or
		// signatures are wrong and the test only sees early refusals.
		t.Logf("%d client and %d federation requests answered 2xx", clientOK.Load(), fedOK.Load())
		if fedOK.Load() == 0 || clientOK.Load() == 0 {
			t.Errorf("no request was answered 2xx: the test's credentials are broken")
		}
		slices.Sort(failures)
		for _, f := range failures {
			t.Error(f)
		}
	})
}

// goodBodyFor returns the valid-ish body of rt, or "".
func goodBodyFor(rt badRoute) string {
	best := ""
	for suffix := range goodBodies {
		if strings.HasSuffix(rt.path, suffix) && len(suffix) > len(best) {
			best = suffix
		}
	}
	if best == "" {
		return ""
	}
	return goodBodies[best]
}

// badBodies returns bodies that are not JSON, not an object, or objects
// whose common fields all have one wrong value.
func badBodies() map[string][]byte {
	bodies := map[string][]byte{
		"broken":            []byte(`{"body":`),
		"trailing":          []byte(`{} {}`),
		"array":             []byte(`[]`),
		"string":            []byte(`"s"`),
		"number":            []byte(`1`),
		"null":              []byte(`null`),
		"bool":              []byte(`true`),
		"invalid UTF-8":     []byte("{\"body\":\"\xff\xfe\",\"msgtype\":\"m.text\"}"),
		"invalid UTF-8 key": []byte("{\"\xff\":1}"),
		"lone surrogate":    []byte(`{"body":"\ud800","msgtype":"m.text"}`),
		"deep array":        []byte(strings.Repeat("[", 20000) + strings.Repeat("]", 20000)),
		"deep object":       []byte(strings.Repeat(`{"a":`, 500) + "1" + strings.Repeat("}", 500)),
		"huge string":       []byte(`{"body":"` + strings.Repeat("x", badInputBodyMax-100) + `","msgtype":"m.text"}`),
		"over the limit":    []byte(`{"body":"` + strings.Repeat("x", badInputBodyMax+10) + `"}`),
		"many keys":         manyKeys(5000),
		"duplicate keys":    []byte(`{"body":"a","body":"b","msgtype":"m.text"}`),
	}
	for _, v := range badJSONValues {
		var b strings.Builder
		b.WriteString("{")
		for i, f := range commonFields {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "%q:%s", f, v)
		}
		b.WriteString("}")
		bodies["fields="+abbrev(v)] = []byte(b.String())
	}
	return bodies
}

func manyKeys(n int) []byte {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteString("}")
	return []byte(b.String())
}

func abbrev(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// mutations returns body with each field (at any depth) replaced by each
// of mutationValues, keyed by the field's path and the value.
func mutations(t *testing.T, body string) map[string][]byte {
	var v any
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("good body %s: %v", body, err)
	}
	out := map[string][]byte{}
	var walk func(path string, replace func(json.RawMessage), cur any)
	walk = func(path string, replace func(json.RawMessage), cur any) {
		for _, bad := range mutationValues {
			replace(json.RawMessage(bad))
			b, err := json.Marshal(v)
			if err == nil {
				out[path+"="+abbrev(bad)] = b
			}
		}
		replace(nil) // restore
		switch c := cur.(type) {
		case map[string]any:
			for k, child := range c {
				walk(path+"."+k, func(r json.RawMessage) {
					if r == nil {
						c[k] = child
					} else {
						c[k] = r
					}
				}, child)
			}
		case []any:
			for i, child := range c {
				walk(fmt.Sprintf("%s[%d]", path, i), func(r json.RawMessage) {
					if r == nil {
						c[i] = child
					} else {
						c[i] = r
					}
				}, child)
			}
		}
	}
	root := v
	walk("", func(r json.RawMessage) {
		if r == nil {
			v = root
		} else {
			v = r
		}
	}, root)
	return out
}

// xMatrix returns the X-Matrix Authorization header of a request from the
// evil server. A body that cannot be canonicalised is signed as if it were
// empty, which the server must refuse with a 4xx as well.
func (e *evilServer) xMatrix(method, uri, dest string, body []byte) string {
	signable := map[string]any{"method": method, "uri": uri, "origin": e.name, "destination": dest}
	if len(bytes.TrimSpace(body)) > 0 && json.Valid(body) {
		signable["content"] = json.RawMessage(body)
	}
	msg, err := canonicaljson.Marshal(signable)
	if err != nil {
		delete(signable, "content")
		msg, _ = canonicaljson.Marshal(signable)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(e.key.Priv, msg))
	return fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="%s",sig="%s"`, e.name, dest, e.key.ID, sig)
}

// TestFederationBadBodies checks the errcodes of federation bodies that
// are not JSON (M_NOT_JSON) or JSON of the wrong shape (M_BAD_JSON), sent
// with a valid X-Matrix signature where the body can be signed at all.
func TestFederationBadBodies(t *testing.T) {
	hs := mxtest.Federation(t, "sqlite", 1)
	srv := hs[0]
	server := srv.Config.ServerName
	evil := startEvil(t, srv.TestCA)
	for _, c := range []struct {
		name, method, path string
		body               string
		errcode            string
	}{
		{"broken", "PUT", "/_matrix/federation/v1/send/b1", `{"pdus":`, "M_NOT_JSON"},
		{"invalid UTF-8", "PUT", "/_matrix/federation/v1/send/b2", "{\"origin\":\"\xff\"}", "M_NOT_JSON"},
		{"lone surrogate", "PUT", "/_matrix/federation/v1/send/b3", `{"origin":"\udc00"}`, "M_NOT_JSON"},
		{"two values", "PUT", "/_matrix/federation/v1/send/b4", `{} {}`, "M_NOT_JSON"},
		{"array", "PUT", "/_matrix/federation/v1/send/b5", `[]`, "M_BAD_JSON"},
		{"pdus not a list", "PUT", "/_matrix/federation/v1/send/b6", `{"pdus":"x","edus":[]}`, "M_BAD_JSON"},
		{"device_keys not an object", "POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":1}`, "M_BAD_JSON"},
		{"one_time_keys not an object", "POST", "/_matrix/federation/v1/user/keys/claim", `{"one_time_keys":[]}`, "M_BAD_JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", evil.xMatrix(c.method, c.path, server, []byte(c.body)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb errBody
			_ = json.NewDecoder(resp.Body).Decode(&eb)
			if resp.StatusCode != http.StatusBadRequest || eb.Errcode != c.errcode {
				t.Errorf("got %d %s (%s), want 400 %s", resp.StatusCode, eb.Errcode, eb.Error, c.errcode)
			}
		})
	}
}
