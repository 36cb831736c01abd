package homeserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/pdu"
)

// fakeRoom is a room resident on a hand-driven peer (evilServer): its
// create event, creator's join, power levels and public join rules, built
// and signed by the peer. The peer answers make_join, make_leave,
// send_join and send_leave for it in the ways older servers do.
type fakeRoom struct {
	peer    *evilServer
	v       id.RoomVersion
	roomID  id.RoomID
	creator id.UserID
	byID    map[id.EventID]*pdu.Event
	state   []*pdu.Event // create, creator's join, power levels, join rules
	// noRoomVersion leaves room_version out of make_* answers (servers
	// older than room versions).
	noRoomVersion bool
	// v1Only answers the v2 send_join and send_leave with 404
	// M_UNRECOGNIZED and serves only v1.
	v1Only bool
	// v1Calls counts the v1 send_join and send_leave requests served.
	v1Calls atomic.Int32
}

var fakeRoomSeq atomic.Int32

func newFakeRoom(t *testing.T, peer *evilServer, v id.RoomVersion) *fakeRoom {
	t.Helper()
	f := &fakeRoom{peer: peer, v: v, creator: id.UserID("@creator:" + peer.name), byID: map[id.EventID]*pdu.Event{}}
	if !v.RoomIDIsCreateEventID() {
		f.roomID = id.RoomID(fmt.Sprintf("!fake%d:%s", fakeRoomSeq.Add(1), peer.name))
	}
	empty := ""
	creatorKey := f.creator.String()
	createContent := map[string]any{"room_version": string(v)}
	if v.CreatorInContent() {
		createContent["creator"] = f.creator
	}
	create := f.build(t, f.creator, "m.room.create", &empty, createContent)
	if f.roomID == "" {
		f.roomID = create.RoomID()
	}
	f.build(t, f.creator, "m.room.member", &creatorKey, map[string]string{"membership": "join"})
	f.build(t, f.creator, "m.room.power_levels", &empty, map[string]any{"users": map[string]int{f.creator.String(): 100}})
	f.build(t, f.creator, "m.room.join_rules", &empty, map[string]string{"join_rule": "public"})
	f.serve()
	return f
}

// build makes the next event of the room, after the last one, with the
// auth events the spec selects from the state so far.
func (f *fakeRoom) build(t *testing.T, sender id.UserID, typ string, stateKey *string, content any) *pdu.Event {
	t.Helper()
	ev, err := f.next(sender, typ, stateKey, content)
	if err != nil {
		t.Fatal(err)
	}
	if stateKey != nil {
		f.state = append(f.state, ev)
	}
	f.byID[ev.ID] = ev
	return ev
}

func (f *fakeRoom) next(sender id.UserID, typ string, stateKey *string, content any) (*pdu.Event, error) {
	raw, _ := json.Marshal(content)
	var auth, prev []id.EventID
	var depth int64 = 1
	if n := len(f.state); n > 0 {
		last := f.state[n-1]
		prev, depth = []id.EventID{last.ID}, last.Depth+1
		for _, s := range f.state {
			isCreate := s.Type == "m.room.create"
			if (isCreate && !f.v.RoomIDIsCreateEventID()) || s.Type == "m.room.power_levels" || s.Type == "m.room.join_rules" ||
				(s.Type == "m.room.member" && (*s.StateKey == sender.String() || (stateKey != nil && *s.StateKey == *stateKey))) {
				auth = append(auth, s.ID)
			}
		}
	}
	roomID := f.roomID
	if typ == "m.room.create" && f.v.RoomIDIsCreateEventID() {
		roomID = ""
	}
	return pdu.Build(pdu.Proto{Type: typ, StateKey: stateKey, Sender: sender, Content: raw, RoomID: roomID},
		pdu.BuildArgs{Version: f.v, AuthEvents: auth, PrevEvents: prev, Depth: depth, Timestamp: time.Now().UnixMilli(),
			ServerName: f.peer.name, KeyID: f.peer.key.ID, Key: f.peer.key.Priv,
			Referenced: func(evID id.EventID) (*pdu.Event, error) {
				if e := f.byID[evID]; e != nil {
					return e, nil
				}
				return nil, fmt.Errorf("unknown event %s", evID)
			}})
}

func (f *fakeRoom) stateJSON() []json.RawMessage {
	out := make([]json.RawMessage, 0, len(f.state))
	for _, e := range f.state {
		out = append(out, e.JSON())
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serve adds the room's membership endpoints to the peer. Each room of a
// peer needs its own peer, since the routes are per server.
func (f *fakeRoom) serve() {
	makeMembership := func(membership string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			user := id.UserID(r.PathValue("userId"))
			sk := user.String()
			ev, err := f.next(user, "m.room.member", &sk, map[string]string{"membership": membership})
			if err != nil {
				writeJSON(w, 500, map[string]string{"errcode": "M_UNKNOWN", "error": err.Error()})
				return
			}
			var m map[string]json.RawMessage
			_ = json.Unmarshal(ev.JSON(), &m)
			for _, k := range []string{"event_id", "signatures", "hashes", "unsigned"} {
				delete(m, k)
			}
			resp := map[string]any{"event": m}
			if !f.noRoomVersion {
				resp["room_version"] = f.v
			}
			writeJSON(w, 200, resp)
		}
	}
	sendMembership := func(v1 bool, join bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if f.v1Only && !v1 {
				writeJSON(w, 404, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
				return
			}
			raw, _ := io.ReadAll(r.Body)
			if _, err := pdu.Parse(f.v, raw); err != nil {
				writeJSON(w, 400, map[string]string{"errcode": "M_BAD_JSON", "error": err.Error()})
				return
			}
			var body any = map[string]any{}
			if join {
				body = map[string]any{"origin": f.peer.name, "state": f.stateJSON(), "auth_chain": f.stateJSON()}
			}
			if v1 {
				f.v1Calls.Add(1)
				body = []any{200, body}
			}
			writeJSON(w, 200, body)
		}
	}
	mux := f.peer.mux
	mux.HandleFunc("GET /_matrix/federation/v1/make_join/{roomId}/{userId}", makeMembership("join"))
	mux.HandleFunc("GET /_matrix/federation/v1/make_leave/{roomId}/{userId}", makeMembership("leave"))
	mux.HandleFunc("PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}", sendMembership(false, true))
	mux.HandleFunc("PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}", sendMembership(true, true))
	mux.HandleFunc("PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}", sendMembership(false, false))
	mux.HandleFunc("PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}", sendMembership(true, false))
}

// TestJoinThroughOlderServers: a make_join answer without room_version is
// a room of version 1, and a server that only has the v1 send_join and
// send_leave is joined (and an invite from it rejected) through those,
// with their [200, {...}] answers.
func TestJoinThroughOlderServers(t *testing.T) {
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 1)

	t.Run("make_join without room_version", func(t *testing.T) {
		peer := startEvil(t, hs[0].TestCA)
		room := newFakeRoom(t, peer, "1")
		room.noRoomVersion = true
		bob := hs[0].Client("bob")
		if _, err := bob.JoinRoom(ctx, room.roomID.String(), &mautrix.ReqJoinRoom{Via: []string{peer.name}}); err != nil {
			t.Fatalf("joining a room whose make_join has no room_version: %v", err)
		}
		if got := membershipOf(ctx, bob, room.roomID, bob.UserID); got != "join" {
			t.Fatalf("bob's membership is %q", got)
		}
	})

	t.Run("send_join v1", func(t *testing.T) {
		peer := startEvil(t, hs[0].TestCA)
		room := newFakeRoom(t, peer, "10")
		room.v1Only = true
		bob := hs[0].Client("bob")
		if _, err := bob.JoinRoom(ctx, room.roomID.String(), &mautrix.ReqJoinRoom{Via: []string{peer.name}}); err != nil {
			t.Fatalf("joining through a server with only send_join v1: %v", err)
		}
		if got := membershipOf(ctx, bob, room.roomID, bob.UserID); got != "join" || room.v1Calls.Load() != 1 {
			t.Fatalf("bob's membership is %q after %d v1 calls", got, room.v1Calls.Load())
		}
	})

	t.Run("send_leave v1", func(t *testing.T) {
		peer := startEvil(t, hs[0].TestCA)
		room := newFakeRoom(t, peer, "10")
		room.v1Only = true
		bob := hs[0].Client("bob")
		sk := bob.UserID.String()
		invite, err := room.next(room.creator, "m.room.member", &sk, map[string]string{"membership": "invite"})
		if err != nil {
			t.Fatal(err)
		}
		path := "/_matrix/federation/v2/invite/" + url.PathEscape(room.roomID.String()) + "/" + url.PathEscape(invite.ID.String())
		body := map[string]any{"room_version": room.v, "event": json.RawMessage(invite.JSON()), "invite_room_state": room.stateJSON()[:1]}
		if err := peer.client.Do(ctx, hs[0].Config.ServerName, "PUT", path, nil, body, nil); err != nil {
			t.Fatalf("inviting bob: %v", err)
		}
		if _, err := bob.LeaveRoom(ctx, room.roomID); err != nil {
			t.Fatalf("rejecting the invite: %v", err)
		}
		if room.v1Calls.Load() != 1 {
			t.Fatalf("the rejection made %d v1 send_leave calls, want 1", room.v1Calls.Load())
		}
	})
}

// TestRemoteJoinErrorsReachClient: when the resident server refuses a
// make_join or make_knock, the client gets its errcode and status, not a
// gateway error.
func TestRemoteJoinErrorsReachClient(t *testing.T) {
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 1)
	peer := startEvil(t, hs[0].TestCA)
	answers := map[string]struct {
		status int
		code   string
	}{
		"forbidden":    {403, "M_FORBIDDEN"},
		"unknown":      {404, "M_NOT_FOUND"},
		"incompatible": {400, "M_INCOMPATIBLE_ROOM_VERSION"},
	}
	refuse := func(w http.ResponseWriter, r *http.Request) {
		roomID := id.RoomID(r.PathValue("roomId"))
		a := answers[roomID.String()[1:len(roomID.String())-len(peer.name)-1]]
		body := map[string]any{"errcode": a.code, "error": "refused"}
		if a.code == "M_INCOMPATIBLE_ROOM_VERSION" {
			body["room_version"] = "99"
		}
		writeJSON(w, a.status, body)
	}
	peer.mux.HandleFunc("GET /_matrix/federation/v1/make_join/{roomId}/{userId}", refuse)
	peer.mux.HandleFunc("GET /_matrix/federation/v1/make_knock/{roomId}/{userId}", refuse)
	bob := hs[0].Client("bob")
	for name, want := range answers {
		roomID := "!" + name + ":" + peer.name
		for op, try := range map[string]func() error{
			"join": func() error {
				_, err := bob.JoinRoom(ctx, roomID, &mautrix.ReqJoinRoom{Via: []string{peer.name}})
				return err
			},
			"knock": func() error {
				_, err := bob.KnockRoom(ctx, roomID, &mautrix.ReqKnockRoom{Via: []string{peer.name}})
				return err
			},
		} {
			err := try()
			var herr mautrix.HTTPError
			if !errors.As(err, &herr) || herr.RespError == nil || herr.RespError.ErrCode != want.code || herr.Response.StatusCode != want.status {
				t.Errorf("%s refused with %d %s: client got %v", op, want.status, want.code, err)
			}
		}
	}
}

// TestV1MembershipEndpoints: the v1 send_join, send_leave and invite that
// older servers still use are served, with their [200, {...}] answers;
// an invite to a remote server without invite v2 falls back to v1 in
// rooms of versions 1 and 2; and a server the room's ACL denies may not
// invite into it.
func TestV1MembershipEndpoints(t *testing.T) {
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 1)
	resident := hs[0].Config.ServerName
	alice := hs[0].Client("alice")
	peer := startEvil(t, hs[0].TestCA)
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	roomID := created.RoomID
	user := id.UserID("@old:" + peer.name)
	member := func(op, membership string) *pdu.Event {
		var tmpl struct {
			RoomVersion id.RoomVersion  `json:"room_version"`
			Event       json.RawMessage `json:"event"`
		}
		path := "/_matrix/federation/v1/" + op + "/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(user.String())
		if err := peer.client.Do(ctx, resident, "GET", path, url.Values{"ver": {"12"}}, nil, &tmpl); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		ev, err := pdu.FromTemplate(tmpl.RoomVersion, tmpl.Event, json.RawMessage(`{"membership":"`+membership+`"}`), time.Now().UnixMilli(), peer.name, peer.key.ID, peer.key.Priv)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}

	join := member("make_join", "join")
	var joined []json.RawMessage
	path := "/_matrix/federation/v1/send_join/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(join.ID.String())
	if err := peer.client.Do(ctx, resident, "PUT", path, nil, json.RawMessage(join.JSON()), &joined); err != nil {
		t.Fatalf("send_join v1: %v", err)
	}
	var joinBody struct {
		State     []json.RawMessage `json:"state"`
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	if len(joined) != 2 || string(joined[0]) != "200" || json.Unmarshal(joined[1], &joinBody) != nil || len(joinBody.State) == 0 || len(joinBody.AuthChain) == 0 {
		t.Fatalf("send_join v1 answered %s", joined)
	}
	waitFor(t, "the v1 join", func() (bool, error) { return membershipOf(ctx, alice, roomID, user) == "join", nil })

	leave := member("make_leave", "leave")
	var left []json.RawMessage
	path = "/_matrix/federation/v1/send_leave/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(leave.ID.String())
	if err := peer.client.Do(ctx, resident, "PUT", path, nil, json.RawMessage(leave.JSON()), &left); err != nil {
		t.Fatalf("send_leave v1: %v", err)
	}
	if len(left) != 2 || string(left[0]) != "200" || string(left[1]) != "{}" {
		t.Fatalf("send_leave v1 answered %s", left)
	}
	waitFor(t, "the v1 leave", func() (bool, error) { return membershipOf(ctx, alice, roomID, user) == "leave", nil })

	// An inbound v1 invite to a room of version 1 on the peer.
	room := newFakeRoom(t, peer, "1")
	bob := hs[0].Client("bob")
	sk := bob.UserID.String()
	invite, err := room.next(room.creator, "m.room.member", &sk, map[string]string{"membership": "invite"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(invite.JSON(), &m)
	m["unsigned"] = map[string]any{"invite_room_state": room.stateJSON()[:1]}
	var invited []json.RawMessage
	path = "/_matrix/federation/v1/invite/" + url.PathEscape(room.roomID.String()) + "/" + url.PathEscape(invite.ID.String())
	if err := peer.client.Do(ctx, resident, "PUT", path, nil, m, &invited); err != nil {
		t.Fatalf("invite v1: %v", err)
	}
	var invBody struct {
		Event json.RawMessage `json:"event"`
	}
	if len(invited) != 2 || string(invited[0]) != "200" || json.Unmarshal(invited[1], &invBody) != nil {
		t.Fatalf("invite v1 answered %s", invited)
	}
	if signed, err := pdu.Parse("1", invBody.Event); err != nil || len(signed.Signatures[resident]) == 0 {
		t.Fatalf("invite v1 did not come back countersigned (%v): %s", err, invBody.Event)
	}
	waitFor(t, "bob's v1 invite", func() (bool, error) {
		resp, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			return false, err
		}
		_, ok := resp.Rooms.Invite[room.roomID]
		return ok, nil
	})

	// An outbound invite to a server without invite v2, in a v1 room.
	old, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	var v1Invites atomic.Int32
	peer.mux.HandleFunc("PUT /_matrix/federation/v2/invite/{roomId}/{eventId}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 404, map[string]string{"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
	})
	peer.mux.HandleFunc("PUT /_matrix/federation/v1/invite/{roomId}/{eventId}", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		ev, err := pdu.Parse("1", raw)
		if err == nil {
			ev, err = ev.Countersign(peer.name, peer.key.ID, peer.key.Priv)
		}
		if err != nil {
			writeJSON(w, 400, map[string]string{"errcode": "M_BAD_JSON", "error": err.Error()})
			return
		}
		v1Invites.Add(1)
		writeJSON(w, 200, []any{200, map[string]json.RawMessage{"event": ev.JSON()}})
	})
	if _, err := alice.InviteUser(ctx, old.RoomID, &mautrix.ReqInviteUser{UserID: id.UserID("@carol:" + peer.name)}); err != nil {
		t.Fatalf("inviting through invite v1: %v", err)
	}
	if v1Invites.Load() != 1 {
		t.Fatalf("%d v1 invites sent, want 1", v1Invites.Load())
	}

	// A server the room's ACL denies cannot invite into it, whoever the
	// invitee (here a user who does not exist: the ACL answers first, as
	// it does on every room endpoint). ACLs match the host without the
	// port: this denies the peer, not alice's server.
	if _, err := alice.SendStateEvent(ctx, roomID, event.StateServerACL, "", map[string]any{
		"allow": []string{"*"}, "deny": []string{"127.0.0.*"}, "allow_ip_literals": true,
	}); err != nil {
		t.Fatal(err)
	}
	dk := "@nobody:" + resident
	tmplRoom := fakeRoom{peer: peer, v: "12", roomID: roomID, byID: map[id.EventID]*pdu.Event{}}
	banned, err := tmplRoom.next(user, "m.room.member", &dk, map[string]string{"membership": "invite"})
	if err != nil {
		t.Fatal(err)
	}
	path = "/_matrix/federation/v2/invite/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(banned.ID.String())
	body := map[string]any{"room_version": "12", "event": json.RawMessage(banned.JSON()), "invite_room_state": []any{}}
	err = peer.client.Do(ctx, resident, "PUT", path, nil, body, nil)
	var fe *fedclient.Error
	if !errors.As(err, &fe) || fe.Status != 403 || fe.Code != "M_FORBIDDEN" {
		t.Fatalf("an invite from a server the ACL denies got %v, want 403 M_FORBIDDEN", err)
	}
}

// TestRestrictedJoinOverFederation: a user of another server who is in a
// room that a restricted room allows joins it through the resident
// server, which names a local member who may invite as the authoriser
// and signs the join; a user in none of the allowed rooms is refused.
func TestRestrictedJoinOverFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob, carol := hs[0].Client("alice"), hs[1].Client("bob"), hs[1].Client("carol")
		space, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		restricted, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat",
			InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{
				"join_rule": "restricted",
				"allow":     []any{map[string]any{"type": "m.room_membership", "room_id": space.RoomID}},
			}}}}})
		if err != nil {
			t.Fatal(err)
		}
		via := &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}
		if _, err := bob.JoinRoom(ctx, space.RoomID.String(), via); err != nil {
			t.Fatalf("joining the allowed room: %v", err)
		}
		if _, err := bob.JoinRoom(ctx, restricted.RoomID.String(), via); err != nil {
			t.Fatalf("joining the restricted room as a member of an allowed room: %v", err)
		}
		waitFor(t, "bob's restricted join on alice's server", func() (bool, error) {
			return membershipOf(ctx, alice, restricted.RoomID, bob.UserID) == "join", nil
		})
		var member struct {
			Via id.UserID `json:"join_authorised_via_users_server"`
		}
		if err := alice.StateEvent(ctx, restricted.RoomID, event.StateMember, bob.UserID.String(), &member); err != nil || member.Via != alice.UserID {
			t.Errorf("bob's join was authorised by %q (%v), want %s", member.Via, err, alice.UserID)
		}
		_, err = carol.JoinRoom(ctx, restricted.RoomID.String(), via)
		var herr mautrix.HTTPError
		if !errors.As(err, &herr) || herr.Response.StatusCode != 403 {
			t.Errorf("a user in none of the allowed rooms joined or got %v, want 403", err)
		}
	})
}
