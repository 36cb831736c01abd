package homeserver_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/pdu"
)

// The tests of this file cover the client API details of issue #10, each
// found by a client (matrix-nio, weechat-matrix, Element Web) or a
// conformance check.

// mustStatus fails unless err is a Matrix error with the status and
// errcode.
func mustStatus(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.Response == nil || he.Response.StatusCode != status || he.RespError == nil || he.RespError.ErrCode != code {
		t.Fatalf("%s: got %v, want %d %s", what, err, status, code)
	}
}

// rawGet GETs a client API path (parts after /_matrix/client/v3) and
// decodes the answer into a map.
func rawGet(t *testing.T, cli *mautrix.Client, parts ...any) map[string]any {
	t.Helper()
	var out map[string]any
	if _, err := cli.MakeRequest(context.Background(), http.MethodGet, cli.BuildClientURL(append([]any{"v3"}, parts...)...), nil, &out); err != nil {
		t.Fatalf("GET %v: %v", parts, err)
	}
	return out
}

func memberContent(t *testing.T, cli *mautrix.Client, roomID id.RoomID, user id.UserID) map[string]any {
	t.Helper()
	var c map[string]any
	if err := cli.StateEvent(context.Background(), roomID, event.StateMember, user.String(), &c); err != nil {
		t.Fatalf("member event of %s: %v", user, err)
	}
	return c
}

// TestMemberStateEvent: PUT /state/m.room.member/{userId} is a state event
// like any other (item 1): a joined user changes their room profile, and
// membership changes the auth rules allow go through.
func TestMemberStateEvent(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		put := func(cli *mautrix.Client, target id.UserID, content map[string]any) (*mautrix.RespSendEvent, error) {
			return cli.SendStateEvent(ctx, roomID, event.StateMember, target.String(), content)
		}

		if _, err := put(alice, alice.UserID, map[string]any{"membership": "join", "displayname": "Room Alice", "avatar_url": "mxc://localhost/a"}); err != nil {
			t.Fatalf("room profile change: %v", err)
		}
		if c := memberContent(t, alice, roomID, alice.UserID); c["displayname"] != "Room Alice" || c["avatar_url"] != "mxc://localhost/a" {
			t.Fatalf("member content after profile change = %v", c)
		}

		if _, err := put(alice, bob.UserID, map[string]any{"membership": "invite", "reason": "come"}); err != nil {
			t.Fatalf("invite: %v", err)
		}
		if m := membershipOf(ctx, alice, roomID, bob.UserID); m != "invite" {
			t.Fatalf("bob's membership after invite = %q", m)
		}
		_, err = put(alice, id.UserID("@nobody:localhost"), map[string]any{"membership": "invite"})
		mustStatus(t, "invite of an unknown local user", err, 404, "M_NOT_FOUND")

		joined, err := put(bob, bob.UserID, map[string]any{"membership": "join"})
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		if m := membershipOf(ctx, alice, roomID, bob.UserID); m != "join" {
			t.Fatalf("bob's membership after join = %q", m)
		}
		if ev, err := alice.GetEvent(ctx, roomID, joined.EventID); err != nil || ev.Content.Raw["membership"] != "join" {
			t.Fatalf("join event %s: %v %v", joined.EventID, ev, err)
		}

		// Carol is not in the room: the auth rules refuse her.
		_, err = put(carol, alice.UserID, map[string]any{"membership": "leave"})
		mustStatus(t, "kick by an outsider", err, 403, "M_FORBIDDEN")
		// Bob has no power to kick.
		_, err = put(bob, alice.UserID, map[string]any{"membership": "leave"})
		mustStatus(t, "kick without power", err, 403, "M_FORBIDDEN")

		if _, err := put(alice, bob.UserID, map[string]any{"membership": "leave", "reason": "bye"}); err != nil {
			t.Fatalf("kick: %v", err)
		}
		if m := membershipOf(ctx, alice, roomID, bob.UserID); m != "leave" {
			t.Fatalf("bob's membership after kick = %q", m)
		}
		if _, err := put(alice, bob.UserID, map[string]any{"membership": "ban"}); err != nil {
			t.Fatalf("ban: %v", err)
		}
		if m := membershipOf(ctx, alice, roomID, bob.UserID); m != "ban" {
			t.Fatalf("bob's membership after ban = %q", m)
		}
		_, err = put(bob, bob.UserID, map[string]any{"membership": "join"})
		mustStatus(t, "join while banned", err, 403, "M_FORBIDDEN")

		_, err = put(alice, "not-a-user", map[string]any{"membership": "ban"})
		mustStatus(t, "state key that is no user ID", err, 400, "M_BAD_JSON")
		_, err = put(alice, bob.UserID, map[string]any{"membership": 3})
		mustStatus(t, "membership that is no string", err, 400, "M_BAD_JSON")
	})
}

// TestJoinedMembersProfile: joined_members answers display_name and
// avatar_url (item 2); matrix-nio and weechat-matrix reject displayname.
func TestJoinedMembersProfile(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		if err := alice.SetDisplayName(ctx, "Alice A."); err != nil {
			t.Fatal(err)
		}
		if err := alice.SetAvatarURL(ctx, id.ContentURI{Homeserver: "localhost", FileID: "av"}); err != nil {
			t.Fatal(err)
		}
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		resp := rawGet(t, alice, "rooms", created.RoomID, "joined_members")
		joined, _ := resp["joined"].(map[string]any)
		me, _ := joined[alice.UserID.String()].(map[string]any)
		if me["display_name"] != "Alice A." || me["avatar_url"] != "mxc://localhost/av" {
			t.Fatalf("joined member = %v, want display_name and avatar_url", me)
		}
		if _, ok := me["displayname"]; ok {
			t.Fatalf("joined member carries displayname: %v", me)
		}
	})
}

// TestTransactionIDScope: a transaction ID is scoped to the device and
// the request path (item 3): the same ID in another room, as another event
// type, or on /redact is a new request; a retry on the same path is not.
func TestTransactionIDScope(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		var rooms []id.RoomID
		for range 2 {
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
			if err != nil {
				t.Fatal(err)
			}
			rooms = append(rooms, created.RoomID)
		}
		send := func(roomID id.RoomID, evType event.Type, body string) id.EventID {
			t.Helper()
			resp, err := alice.SendMessageEvent(ctx, roomID, evType, map[string]any{"msgtype": "m.text", "body": body},
				mautrix.ReqSendEvent{TransactionID: "same"})
			if err != nil {
				t.Fatalf("send %s in %s: %v", evType, roomID, err)
			}
			return resp.EventID
		}
		first := send(rooms[0], event.EventMessage, "one")
		if again := send(rooms[0], event.EventMessage, "one"); again != first {
			t.Fatalf("retry on the same path gave %s, want %s", again, first)
		}
		other := send(rooms[1], event.EventMessage, "two")
		if other == first {
			t.Fatalf("the same transaction ID in another room gave the first room's event")
		}
		if ev, err := alice.GetEvent(ctx, rooms[1], other); err != nil || ev.Content.Raw["body"] != "two" {
			t.Fatalf("event in the second room: %v %v", ev, err)
		}
		if sticker := send(rooms[0], event.EventSticker, "three"); sticker == first {
			t.Fatalf("the same transaction ID with another event type gave the first event")
		}

		red, err := alice.RedactEvent(ctx, rooms[0], first, mautrix.ReqRedact{TxnID: "same"})
		if err != nil {
			t.Fatalf("redact: %v", err)
		}
		if red.EventID == first {
			t.Fatalf("a redaction under a transaction ID used by /send returned the sent event")
		}
		red2, err := alice.RedactEvent(ctx, rooms[1], other, mautrix.ReqRedact{TxnID: "same"})
		if err != nil || red2.EventID == red.EventID {
			t.Fatalf("redaction in another room: %v (%s, first %s)", err, red2.EventID, red.EventID)
		}
		again, err := alice.RedactEvent(ctx, rooms[0], first, mautrix.ReqRedact{TxnID: "same"})
		if err != nil || again.EventID != red.EventID {
			t.Fatalf("retried redaction: %v (%s, want %s)", err, again.EventID, red.EventID)
		}
		if ev, err := alice.GetEvent(ctx, rooms[1], other); err != nil || ev.Content.Raw["body"] != nil {
			t.Fatalf("second room's event after its redaction: %v %v", ev, err)
		}
	})
}

// TestRedactionTransactionID: a redaction's unsigned.transaction_id is
// the client's own transaction ID (item 4); Element Web matches its local
// echo by it.
func TestRedactionTransactionID(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := alice.SendText(ctx, created.RoomID, "oops")
		if err != nil {
			t.Fatal(err)
		}
		red, err := alice.RedactEvent(ctx, created.RoomID, msg.EventID, mautrix.ReqRedact{TxnID: "my-redaction-1"})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := alice.GetEvent(ctx, created.RoomID, red.EventID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Unsigned.TransactionID != "my-redaction-1" {
			t.Fatalf("redaction's unsigned.transaction_id = %q, want my-redaction-1", ev.Unsigned.TransactionID)
		}
		resp, err := alice.SyncRequest(ctx, 0, "", "", true, event.PresenceOnline)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range resp.Rooms.Join[created.RoomID].Timeline.Events {
			if e.ID == red.EventID {
				found = true
				if e.Unsigned.TransactionID != "my-redaction-1" {
					t.Fatalf("synced redaction's transaction_id = %q", e.Unsigned.TransactionID)
				}
			}
		}
		if !found {
			t.Fatalf("redaction %s not in the sync timeline", red.EventID)
		}
	})
}

// TestJoinBodyContent: the body of the join endpoints becomes the member
// event's content (item 5), except third_party_signed.
func TestJoinBodyContent(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		body := map[string]any{
			"reason": "saying hi", "org.example.badge": map[string]any{"level": 3},
			"third_party_signed": map[string]any{"sender": "@x:localhost", "mxid": bob.UserID, "token": "t", "signatures": map[string]any{}},
		}
		for _, tc := range []struct {
			cli *mautrix.Client
			url string
		}{
			{bob, bob.BuildClientURL("v3", "join", roomID)},
			{carol, carol.BuildClientURL("v3", "rooms", roomID, "join")},
		} {
			if _, err := tc.cli.MakeRequest(ctx, http.MethodPost, tc.url, body, nil); err != nil {
				t.Fatalf("join %s: %v", tc.url, err)
			}
			c := memberContent(t, alice, roomID, tc.cli.UserID)
			if c["membership"] != "join" || c["reason"] != "saying hi" {
				t.Fatalf("%s: member content = %v", tc.url, c)
			}
			if badge, _ := c["org.example.badge"].(map[string]any); badge["level"] != float64(3) {
				t.Fatalf("%s: custom key lost: %v", tc.url, c)
			}
			if _, ok := c["third_party_signed"]; ok {
				t.Fatalf("%s: third_party_signed became content: %v", tc.url, c)
			}
		}
		_, err = bob.MakeRequest(ctx, http.MethodPost, bob.BuildClientURL("v3", "rooms", roomID, "leave"), map[string]any{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bob.MakeRequest(ctx, http.MethodPost, bob.BuildClientURL("v3", "join", roomID), map[string]any{"reason": 5}, nil)
		mustStatus(t, "reason of the wrong type", err, 400, "M_BAD_JSON")
		_, err = bob.MakeRequest(ctx, http.MethodPost, bob.BuildClientURL("v3", "join", roomID), map[string]any{"membership": "leave"}, nil)
		if err != nil || membershipOf(ctx, alice, roomID, bob.UserID) != "join" {
			t.Fatalf("a join whose body says leave: %v, membership %q", err, membershipOf(ctx, alice, roomID, bob.UserID))
		}
	})
}

// TestCreateRoomTopicBlock: createRoom's topic carries the m.topic block
// of spec v1.15 (item 6).
func TestCreateRoomTopicBlock(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Topic: "all about *cats*"})
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Topic  string `json:"topic"`
			MTopic struct {
				Text []struct {
					Body     string `json:"body"`
					Mimetype string `json:"mimetype"`
				} `json:"m.text"`
			} `json:"m.topic"`
		}
		if err := alice.StateEvent(ctx, created.RoomID, event.StateTopic, "", &c); err != nil {
			t.Fatal(err)
		}
		if c.Topic != "all about *cats*" || len(c.MTopic.Text) != 1 || c.MTopic.Text[0].Body != "all about *cats*" ||
			(c.MTopic.Text[0].Mimetype != "" && c.MTopic.Text[0].Mimetype != "text/plain") {
			t.Fatalf("topic content = %+v", c)
		}
	})
}

// TestCreateRoomV12Checks: createRoom of a v12 room checks its input with
// 400s rather than letting the auth rules answer 403, and sets v12's
// power levels and creators (item 7).
func TestCreateRoomV12Checks(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		create := func(req *mautrix.ReqCreateRoom) error {
			_, err := alice.CreateRoom(ctx, req)
			return err
		}
		for _, tc := range []struct {
			name string
			req  *mautrix.ReqCreateRoom
			code string
		}{
			{"creator given a level", &mautrix.ReqCreateRoom{RoomVersion: "12",
				PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{alice.UserID: 100}}}, "M_INVALID_PARAM"},
			{"additional creator given a level", &mautrix.ReqCreateRoom{RoomVersion: "12",
				CreationContent:    map[string]any{"additional_creators": []string{bob.UserID.String()}},
				PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{bob.UserID: 50}}}, "M_INVALID_PARAM"},
			{"additional_creators not an array", &mautrix.ReqCreateRoom{RoomVersion: "12",
				CreationContent: map[string]any{"additional_creators": bob.UserID.String()}}, "M_BAD_JSON"},
			{"additional creator not a string", &mautrix.ReqCreateRoom{RoomVersion: "12",
				CreationContent: map[string]any{"additional_creators": []any{42}}}, "M_BAD_JSON"},
			{"additional creator not a user ID", &mautrix.ReqCreateRoom{RoomVersion: "12",
				CreationContent: map[string]any{"additional_creators": []string{"bob"}}}, "M_BAD_JSON"},
			{"additional creator with a bad server name", &mautrix.ReqCreateRoom{RoomVersion: "12",
				CreationContent: map[string]any{"additional_creators": []string{"@bob:bad_server!"}}}, "M_BAD_JSON"},
			{"invitee with a bad server name", &mautrix.ReqCreateRoom{RoomVersion: "12",
				Invite: []id.UserID{"@bob:bad_server!"}}, "M_BAD_JSON"},
			{"initial_state with a create event", &mautrix.ReqCreateRoom{RoomVersion: "12",
				InitialState: []*event.Event{{Type: event.StateCreate, Content: event.Content{Raw: map[string]any{"room_version": "12"}}}}}, "M_BAD_JSON"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				mustStatus(t, tc.name, create(tc.req), 400, tc.code)
			})
		}

		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: "12", Preset: "trusted_private_chat", Invite: []id.UserID{bob.UserID}})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		var createContent struct {
			AdditionalCreators []id.UserID `json:"additional_creators"`
		}
		if err := alice.StateEvent(ctx, roomID, event.StateCreate, "", &createContent); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(createContent.AdditionalCreators, []id.UserID{bob.UserID}) {
			t.Fatalf("additional_creators = %v, want the trusted invitee", createContent.AdditionalCreators)
		}
		var pl map[string]any
		if err := alice.StateEvent(ctx, roomID, event.StatePowerLevels, "", &pl); err != nil {
			t.Fatal(err)
		}
		if users, _ := pl["users"].(map[string]any); len(users) != 0 {
			t.Fatalf("v12 power levels name creators: %v", users)
		}
		if evs, _ := pl["events"].(map[string]any); evs["m.room.tombstone"] != float64(150) {
			t.Fatalf("v12 tombstone level = %v, want 150", evs["m.room.tombstone"])
		}
		_, err = alice.SendStateEvent(ctx, roomID, event.StateCreate, "", map[string]any{"room_version": "12"})
		mustStatus(t, "PUT state m.room.create", err, 403, "M_FORBIDDEN")

		old, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: "11"})
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.StateEvent(ctx, old.RoomID, event.StatePowerLevels, "", &pl); err != nil {
			t.Fatal(err)
		}
		if evs, _ := pl["events"].(map[string]any); evs["m.room.tombstone"] != float64(100) {
			t.Fatalf("v11 tombstone level = %v, want 100", evs["m.room.tombstone"])
		}
	})
}

// recordingPeer is a federation peer that records the invites it gets,
// countersigning them, and knocks through its own client.
type recordingPeer struct {
	*evilServer
	invite atomic.Pointer[json.RawMessage]
}

func startRecordingPeer(t *testing.T, ca *mxtest.TestCA) *recordingPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	p := &recordingPeer{evilServer: &evilServer{name: ln.Addr().String(), key: keys.SigningKey{ID: "ed25519:rec", Priv: priv}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/key/v2/server", func(w http.ResponseWriter, r *http.Request) {
		doc, _ := json.Marshal(map[string]any{
			"server_name": p.name, "valid_until_ts": time.Now().Add(time.Hour).UnixMilli(),
			"verify_keys":     map[string]any{string(p.key.ID): map[string]string{"key": string(p.key.Public())}},
			"old_verify_keys": map[string]any{},
		})
		signed, err := p.key.SignJSON(p.name, doc)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(signed)
	})
	mux.HandleFunc("PUT /_matrix/federation/v2/invite/{roomId}/{eventId}", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		p.invite.Store((*json.RawMessage)(&raw))
		var body struct {
			RoomVersion id.RoomVersion  `json:"room_version"`
			Event       json.RawMessage `json:"event"`
		}
		_ = json.Unmarshal(raw, &body)
		ev, err := pdu.Parse(body.RoomVersion, body.Event)
		if err == nil {
			ev, err = ev.Countersign(p.name, p.key.ID, p.key.Priv)
		}
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"event": json.RawMessage(ev.JSON())})
	})
	p.client = serveFakeServer(t, ca, ln, mux, p.name, p.key)
	return p
}

// checkCreateIsFull checks that the create event of federation stripped
// state is the whole PDU (MSC4311) and the other events are stripped.
func checkCreateIsFull(t *testing.T, what string, state []map[string]any) {
	t.Helper()
	sawCreate := false
	for _, ev := range state {
		_, signed := ev["signatures"]
		_, hashed := ev["hashes"]
		if ev["type"] == "m.room.create" {
			sawCreate = true
			if !signed || !hashed || ev["auth_events"] == nil || ev["origin_server_ts"] == nil {
				t.Fatalf("%s: create event is not the full PDU: %v", what, ev)
			}
			continue
		}
		if signed || hashed {
			t.Fatalf("%s: %s is not stripped: %v", what, ev["type"], ev)
		}
	}
	if !sawCreate {
		t.Fatalf("%s: no create event in %v", what, state)
	}
}

// TestStrippedStateFullCreate: invite_room_state and knock_room_state carry
// the full create event (item 7, MSC4311), for every room version.
func TestStrippedStateFullCreate(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 1)
		srv := hs[0].Config.ServerName
		alice := hs[0].Client("alice")
		peer := startRecordingPeer(t, hs[0].TestCA)
		for _, v := range []id.RoomVersion{"10", "12"} {
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{RoomVersion: v, Name: "Knock here",
				InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{"join_rule": "knock"}}}}})
			if err != nil {
				t.Fatal(err)
			}
			roomID := created.RoomID
			mallory := id.UserID("@mallory:" + peer.name)
			// The v12 invite goes through PUT state, which takes the
			// invite endpoint's path to the invitee's server (item 1).
			if v == "12" {
				_, err = alice.SendStateEvent(ctx, roomID, event.StateMember, mallory.String(), map[string]any{"membership": "invite"})
			} else {
				_, err = alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: mallory})
			}
			if err != nil {
				t.Fatalf("v%s: invite: %v", v, err)
			}
			if m := membershipOf(ctx, alice, roomID, mallory); m != "invite" {
				t.Fatalf("v%s: mallory's membership after the invite = %q", v, m)
			}
			raw := peer.invite.Load()
			if raw == nil {
				t.Fatalf("v%s: no invite arrived", v)
			}
			var inv struct {
				State []map[string]any `json:"invite_room_state"`
			}
			if err := json.Unmarshal(*raw, &inv); err != nil {
				t.Fatal(err)
			}
			checkCreateIsFull(t, fmt.Sprintf("v%s invite_room_state", v), inv.State)

			knocker := id.UserID("@knocker:" + peer.name)
			var tmpl struct {
				RoomVersion id.RoomVersion  `json:"room_version"`
				Event       json.RawMessage `json:"event"`
			}
			path := "/_matrix/federation/v1/make_knock/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(knocker.String())
			if err := peer.client.Do(ctx, srv, "GET", path, url.Values{"ver": {string(v)}}, nil, &tmpl); err != nil {
				t.Fatalf("v%s: make_knock: %v", v, err)
			}
			knock, err := pdu.FromTemplate(tmpl.RoomVersion, tmpl.Event, json.RawMessage(`{"membership":"knock"}`), time.Now().UnixMilli(), peer.name, peer.key.ID, peer.key.Priv)
			if err != nil {
				t.Fatal(err)
			}
			var resp struct {
				State []map[string]any `json:"knock_room_state"`
			}
			path = "/_matrix/federation/v1/send_knock/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(knock.ID.String())
			if err := peer.client.Do(ctx, srv, "PUT", path, nil, json.RawMessage(knock.JSON()), &resp); err != nil {
				t.Fatalf("v%s: send_knock: %v", v, err)
			}
			checkCreateIsFull(t, fmt.Sprintf("v%s knock_room_state", v), resp.State)
		}
	})
}

// TestRegisterDowncases: registration downcases the localpart, as
// Synapse does, and login accepts the original case (item 8).
func TestRegisterDowncases(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		name := fmt.Sprintf("Alice%dX", time.Now().UnixNano()%100000)
		cli := srv.Register(name, "pw-"+name)
		want := id.UserID("@" + strings.ToLower(name) + ":localhost")
		if cli.UserID != want {
			t.Fatalf("registered %s, want %s", cli.UserID, want)
		}
		again := srv.Anonymous()
		_, err := again.Login(ctx, &mautrix.ReqLogin{
			Type:       mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: name},
			Password:   "pw-" + name, StoreCredentials: true,
		})
		if err != nil || again.UserID != want {
			t.Fatalf("login as %s: %v (%s)", name, err, again.UserID)
		}
		_, err = srv.Anonymous().RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: strings.ToUpper(name), Password: "x"})
		mustStatus(t, "registering the same name in other case", err, 400, "M_USER_IN_USE")
	})
}

// TestDeleteDeviceOtherUsersAuth: deleting a device with another user's
// identifier in the UIA auth is 403, even with that user's password
// (item 9).
func TestDeleteDeviceOtherUsersAuth(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		bob := srv.Client("bob")
		bobPassword := "password-" + bob.UserID.Localpart()
		phone := srv.Login(alice.UserID, "password-"+alice.UserID.Localpart())
		auth := map[string]any{
			"type":       "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": bob.UserID.String()},
			"password":   bobPassword,
		}
		err := alice.DeleteDevice(ctx, phone.DeviceID, &mautrix.ReqDeleteDevice[any]{Auth: auth})
		mustStatus(t, "DELETE /devices with bob's auth", err, 403, "M_FORBIDDEN")
		err = alice.DeleteDevices(ctx, &mautrix.ReqDeleteDevices[any]{Devices: []id.DeviceID{phone.DeviceID}, Auth: auth})
		mustStatus(t, "POST /delete_devices with bob's auth", err, 403, "M_FORBIDDEN")
		if _, err := phone.Whoami(ctx); err != nil {
			t.Fatalf("device deleted with another user's auth: %v", err)
		}
		// Alice's own password still works.
		auth["identifier"] = map[string]any{"type": "m.id.user", "user": alice.UserID.String()}
		auth["password"] = "password-" + alice.UserID.Localpart()
		if err := alice.DeleteDevice(ctx, phone.DeviceID, &mautrix.ReqDeleteDevice[any]{Auth: auth}); err != nil {
			t.Fatalf("delete with own auth: %v", err)
		}
	})
}

// TestRedactUnknownEvent: a user who may redact others' events may redact
// an event the server does not hold (item 10); others get 404.
func TestRedactUnknownEvent(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
			t.Fatal(err)
		}
		unknown := id.EventID("$notheldbythisserver0000000000000000000000")
		red, err := alice.RedactEvent(ctx, created.RoomID, unknown, mautrix.ReqRedact{Reason: "spam"})
		if err != nil {
			t.Fatalf("redacting an unknown event: %v", err)
		}
		ev, err := alice.GetEvent(ctx, created.RoomID, red.EventID)
		if err != nil || ev.Type != event.EventRedaction || ev.Redacts != unknown {
			t.Fatalf("redaction event: %+v %v", ev, err)
		}
		_, err = bob.RedactEvent(ctx, created.RoomID, unknown)
		mustStatus(t, "redaction of an unknown event without the power", err, 404, "M_NOT_FOUND")
	})
}

// TestVersionsAdvertised: /versions lists the spec versions whose
// endpoints are served, as versions.go reasons (item 11).
func TestVersionsAdvertised(t *testing.T) {
	srv := mxtest.Start(t, "sqlite")
	resp, err := srv.Anonymous().Versions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range resp.Versions {
		got = append(got, v.String())
	}
	want := []string{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5",
		"v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15"}
	if !slices.Equal(got, want) {
		t.Fatalf("versions = %v, want %v", got, want)
	}
	// v1.15 as versions.go reasons: room_summary is served, and a server
	// with the legacy authentication API only says so at auth_metadata.
	cli := srv.Client("alice")
	created, err := cli.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.MakeRequest(context.Background(), "GET", cli.BuildClientURL("v1", "room_summary", created.RoomID), nil, nil); err != nil {
		t.Errorf("room_summary: %v", err)
	}
	_, err = cli.MakeRequest(context.Background(), "GET", cli.BuildClientURL("v1", "auth_metadata"), nil, nil)
	mustStatus(t, "auth_metadata without the OAuth 2.0 API", err, 404, "M_UNRECOGNIZED")
}

// TestMemberStateEventFederated: PUT /state/m.room.member takes the
// membership endpoints' federation paths (item 1): a remote invite goes
// through the invitee's server, and the invitee's join through the
// inviter's, keeping the content it was given.
func TestMemberStateEventFederated(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateMember, bob.UserID.String(), map[string]any{"membership": "invite"}); err != nil {
			t.Fatalf("remote invite through PUT state: %v", err)
		}
		waitFor(t, "bob's invite", func() (bool, error) {
			resp, err := bob.SyncRequest(ctx, 0, "", "", false, event.PresenceOnline)
			if err != nil {
				return false, err
			}
			_, ok := resp.Rooms.Invite[roomID]
			return ok, nil
		})
		resp, err := bob.SendStateEvent(ctx, roomID, event.StateMember, bob.UserID.String(),
			map[string]any{"membership": "join", "displayname": "Bob over there"})
		if err != nil {
			t.Fatalf("remote join through PUT state: %v", err)
		}
		if resp.EventID == "" {
			t.Fatal("remote join answered no event ID")
		}
		waitFor(t, "bob's join on alice's server", func() (bool, error) {
			var c event.MemberEventContent
			if err := alice.StateEvent(ctx, roomID, event.StateMember, bob.UserID.String(), &c); err != nil {
				return false, err
			}
			return c.Membership == event.MembershipJoin && c.Displayname == "Bob over there", nil
		})
	})
}
