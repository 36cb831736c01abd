package homeserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/federation/eventauth"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/pdu"
)

// receivedEvents is what a strict peer knows of a room: only the events it
// was handed, never the resident server's database.
type receivedEvents map[id.EventID]*mpdu.PDU

func (r receivedEvents) add(t *testing.T, v id.RoomVersion, raws []json.RawMessage) {
	t.Helper()
	for _, raw := range raws {
		ev, err := pdu.Parse(v, raw)
		if err != nil {
			t.Fatalf("parsing a received event: %v", err)
		}
		r[ev.ID] = ev.PDU
	}
}

// get answers the auth rules from the received events alone, as a peer
// that has nothing else would: nil for an event it lacks (none at all
// when it lacks the one create event asked for).
func (r receivedEvents) get(ids []id.EventID) ([]*mpdu.PDU, error) {
	if len(ids) == 1 && r[ids[0]] == nil {
		return nil, nil
	}
	out := make([]*mpdu.PDU, len(ids))
	for i, evID := range ids {
		out[i] = r[evID]
	}
	return out, nil
}

// authorizeAll checks every event of evs against its own auth events,
// looked up in known only: what Dendrite and Synapse do with the state
// and auth chain of a send_join answer.
func authorizeAll(t *testing.T, what string, v id.RoomVersion, known receivedEvents, evs []json.RawMessage) {
	t.Helper()
	noKeys := func(string, id.KeyID, time.Time) (id.SigningKey, time.Time, error) { return "", time.Time{}, nil }
	for _, raw := range evs {
		ev, err := pdu.Parse(v, raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := eventauth.Authorize(v, ev.PDU, nil, known.get, noKeys); err != nil {
			t.Errorf("%s: %s (%s) does not pass the auth rules with the events received: %v", what, ev.ID, ev.Type, err)
		}
	}
}

// TestStrictPeerJoinsV12Room: a server that checks a send_join answer the
// way the spec describes (each event of the state and auth chain against
// the auth events found among the events received) can join a room of
// the default version 12, whose events do not list the create event.
// /event_auth, /state and /state_ids carry the create event as well.
func TestStrictPeerJoinsV12Room(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 1)
		resident := hs[0].Config.ServerName
		alice := hs[0].Client("alice")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "strict", Topic: "v12"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateTopic, "", map[string]string{"topic": "changed"}); err != nil {
			t.Fatal(err)
		}
		peer := startEvil(t, hs[0].TestCA)
		user := id.UserID("@strict:" + peer.name)
		var tmpl struct {
			RoomVersion id.RoomVersion  `json:"room_version"`
			Event       json.RawMessage `json:"event"`
		}
		path := "/_matrix/federation/v1/make_join/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(user.String())
		if err := peer.client.Do(ctx, resident, "GET", path, url.Values{"ver": {"12"}}, nil, &tmpl); err != nil {
			t.Fatalf("make_join: %v", err)
		}
		if tmpl.RoomVersion != "12" {
			t.Fatalf("room version %q, want the default 12", tmpl.RoomVersion)
		}
		v := tmpl.RoomVersion
		join, err := pdu.FromTemplate(v, tmpl.Event, json.RawMessage(`{"membership":"join"}`), time.Now().UnixMilli(), peer.name, peer.key.ID, peer.key.Priv)
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			State     []json.RawMessage `json:"state"`
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		path = "/_matrix/federation/v2/send_join/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(join.ID.String())
		if err := peer.client.Do(ctx, resident, "PUT", path, nil, json.RawMessage(join.JSON()), &resp); err != nil {
			t.Fatalf("send_join: %v", err)
		}
		// The auth chain alone must authorize itself and the join: a
		// server checks it before it trusts the state.
		chain := receivedEvents{}
		chain.add(t, v, resp.AuthChain)
		authorizeAll(t, "send_join auth_chain", v, chain, resp.AuthChain)
		authorizeAll(t, "the join against the auth chain", v, chain, []json.RawMessage{join.JSON()})
		known := receivedEvents{}
		known.add(t, v, resp.AuthChain)
		known.add(t, v, resp.State)
		authorizeAll(t, "send_join state", v, known, resp.State)

		var auth struct {
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		path = "/_matrix/federation/v1/event_auth/" + url.PathEscape(roomID.String()) + "/" + url.PathEscape(join.ID.String())
		if err := peer.client.Do(ctx, resident, "GET", path, nil, nil, &auth); err != nil {
			t.Fatalf("event_auth: %v", err)
		}
		fromEventAuth := receivedEvents{}
		fromEventAuth.add(t, v, auth.AuthChain)
		authorizeAll(t, "the join against /event_auth", v, fromEventAuth, []json.RawMessage{join.JSON()})

		createID := id.EventID("$" + roomID.String()[1:])
		// The state at an event after the join, by full events and by IDs.
		msg, err := alice.SendText(ctx, roomID, "after the join")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			PDUs      []json.RawMessage `json:"pdus"`
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		q := url.Values{"event_id": {msg.EventID.String()}}
		if err := peer.client.Do(ctx, resident, "GET", "/_matrix/federation/v1/state/"+url.PathEscape(roomID.String()), q, nil, &st); err != nil {
			t.Fatalf("state: %v", err)
		}
		stChain := receivedEvents{}
		stChain.add(t, v, st.AuthChain)
		authorizeAll(t, "/state auth_chain", v, stChain, st.AuthChain)
		var ids struct {
			PDUIDs       []id.EventID `json:"pdu_ids"`
			AuthChainIDs []id.EventID `json:"auth_chain_ids"`
		}
		if err := peer.client.Do(ctx, resident, "GET", "/_matrix/federation/v1/state_ids/"+url.PathEscape(roomID.String()), q, nil, &ids); err != nil {
			t.Fatalf("state_ids: %v", err)
		}
		if !slices.Contains(ids.AuthChainIDs, createID) {
			t.Errorf("/state_ids auth_chain_ids lacks the create event %s: %v", createID, ids.AuthChainIDs)
		}
	})
}

// TestStrippedStateCarriesCreatePDU: the invite_room_state sent with an
// invite of a remote user and the knock_room_state answered to a remote
// knock hold the room's create event as a full PDU of the room version
// (spec v1.16), which the other server checks before it trusts the rest.
func TestStrippedStateCarriesCreatePDU(t *testing.T) {
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 1)
	resident := hs[0].Config.ServerName
	alice := hs[0].Client("alice")
	peer := startEvil(t, hs[0].TestCA)
	hasCreate := func(what string, roomID id.RoomID, state []json.RawMessage) {
		t.Helper()
		createID := id.EventID("$" + roomID.String()[1:])
		for _, raw := range state {
			if ev, err := pdu.Parse("12", raw); err == nil && ev.ID == createID && ev.Type == "m.room.create" && len(ev.Signatures[resident]) > 0 {
				return
			}
		}
		t.Errorf("%s lacks the signed create event %s: %s", what, createID, state)
	}

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []json.RawMessage, 1)
	peer.mux.HandleFunc("PUT /_matrix/federation/v2/invite/{roomId}/{eventId}", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Event           json.RawMessage   `json:"event"`
			InviteRoomState []json.RawMessage `json:"invite_room_state"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		ev, err := pdu.Parse("12", body.Event)
		if err == nil {
			ev, err = ev.Countersign(peer.name, peer.key.ID, peer.key.Priv)
		}
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		got <- body.InviteRoomState
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]json.RawMessage{"event": ev.JSON()})
	})
	if _, err := alice.InviteUser(ctx, created.RoomID, &mautrix.ReqInviteUser{UserID: id.UserID("@bob:" + peer.name)}); err != nil {
		t.Fatalf("inviting a remote user: %v", err)
	}
	hasCreate("invite_room_state", created.RoomID, <-got)

	knockable, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat",
		InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{"join_rule": "knock"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	user := id.UserID("@knocker:" + peer.name)
	var tmpl struct {
		RoomVersion id.RoomVersion  `json:"room_version"`
		Event       json.RawMessage `json:"event"`
	}
	path := "/_matrix/federation/v1/make_knock/" + url.PathEscape(knockable.RoomID.String()) + "/" + url.PathEscape(user.String())
	if err := peer.client.Do(ctx, resident, "GET", path, url.Values{"ver": {"12"}}, nil, &tmpl); err != nil {
		t.Fatalf("make_knock: %v", err)
	}
	knock, err := pdu.FromTemplate(tmpl.RoomVersion, tmpl.Event, json.RawMessage(`{"membership":"knock"}`), time.Now().UnixMilli(), peer.name, peer.key.ID, peer.key.Priv)
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		KnockRoomState []json.RawMessage `json:"knock_room_state"`
	}
	path = "/_matrix/federation/v1/send_knock/" + url.PathEscape(knockable.RoomID.String()) + "/" + url.PathEscape(knock.ID.String())
	if err := peer.client.Do(ctx, resident, "PUT", path, nil, json.RawMessage(knock.JSON()), &resp); err != nil {
		t.Fatalf("send_knock: %v", err)
	}
	hasCreate("knock_room_state", knockable.RoomID, resp.KnockRoomState)
}

// TestGapFilledWithStateIDs: for a prev event that /get_missing_events
// did not supply, the state is asked for by IDs (/state_ids) and only the
// events not held are fetched (/event), as Synapse does, not the whole
// /state. A prev event that /get_missing_events returned in bad form is
// not asked for again.
func TestGapFilledWithStateIDs(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 1)
		resident := hs[0].Config.ServerName
		alice := hs[0].Client("alice")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		peer := startEvil(t, hs[0].TestCA)
		join, state := peer.join(t, resident, roomID)
		var plID id.EventID
		stateIDs := []id.EventID{join.ID}
		for _, s := range state {
			if s.Type == "m.room.power_levels" {
				plID = s.ID
			}
			if s.ID != join.ID {
				stateIDs = append(stateIDs, s.ID)
			}
		}
		auth := []id.EventID{plID, join.ID}
		var mu sync.Mutex
		calls := map[string]int{}
		served := map[id.EventID]*pdu.Event{}
		count := func(what string) {
			mu.Lock()
			calls[what]++
			mu.Unlock()
		}
		peer.mux.HandleFunc("GET /_matrix/federation/v1/state_ids/{roomId}", func(w http.ResponseWriter, r *http.Request) {
			count("state_ids")
			writeJSON(w, 200, map[string]any{"pdu_ids": stateIDs, "auth_chain_ids": stateIDs})
		})
		peer.mux.HandleFunc("GET /_matrix/federation/v1/state/{roomId}", func(w http.ResponseWriter, r *http.Request) {
			count("state")
			writeJSON(w, 404, map[string]string{"errcode": "M_NOT_FOUND", "error": "use state_ids"})
		})
		peer.mux.HandleFunc("GET /_matrix/federation/v1/event/{eventId}", func(w http.ResponseWriter, r *http.Request) {
			evID := id.EventID(r.PathValue("eventId"))
			count("event " + evID.String())
			mu.Lock()
			ev := served[evID]
			mu.Unlock()
			if ev == nil {
				writeJSON(w, 404, map[string]string{"errcode": "M_NOT_FOUND", "error": "unknown"})
				return
			}
			writeJSON(w, 200, map[string]any{"origin": peer.name, "origin_server_ts": time.Now().UnixMilli(), "pdus": []json.RawMessage{ev.JSON()}})
		})

		gap := peer.build(t, roomID, join, auth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "unseen"})
		after := peer.build(t, roomID, gap, auth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "after the gap"})
		mu.Lock()
		served[gap.ID] = gap
		mu.Unlock()
		if errText := peer.send(t, resident, after.JSON()); errText != "" {
			t.Fatalf("an event after an unfilled gap was refused: %s", errText)
		}
		mu.Lock()
		if calls["state_ids"] != 1 || calls["state"] != 0 || calls["event "+gap.ID.String()] != 1 {
			t.Errorf("filling the gap took %v, want one /state_ids, one /event of the gap and no /state", calls)
		}
		mu.Unlock()
		waitMessages(t, alice, roomID, []string{"after the gap"})

		// A prev event that comes back from /get_missing_events with a
		// forged signature is not fetched again with /event.
		forged := peer.build(t, roomID, after, auth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "forged"})
		raw := mutate(t, forged, func(m map[string]any) {
			sigs := m["signatures"].(map[string]any)[peer.name].(map[string]any)
			sigs[string(peer.key.ID)] = base64.RawStdEncoding.EncodeToString(make([]byte, 64))
		})
		child := peer.build(t, roomID, forged, auth, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "child of forged"})
		peer.missing.Store(&[]json.RawMessage{raw})
		mu.Lock()
		served[forged.ID] = forged
		mu.Unlock()
		peer.send(t, resident, child.JSON())
		mu.Lock()
		if n := calls["event "+forged.ID.String()]; n != 0 {
			t.Errorf("the event returned in bad form by /get_missing_events was fetched again %d times", n)
		}
		mu.Unlock()
	})
}

// TestCrossRoomRedactionIgnored: a redaction received in one room whose
// redacts names an event of another room redacts nothing.
func TestCrossRoomRedactionIgnored(t *testing.T) {
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 1)
	resident := hs[0].Config.ServerName
	alice := hs[0].Client("alice")
	peer := startEvil(t, hs[0].TestCA)
	rooms := make([]id.RoomID, 2)
	joins := make([]*pdu.Event, 2)
	auths := make([][]id.EventID, 2)
	for i := range rooms {
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		rooms[i] = created.RoomID
		join, state := peer.join(t, resident, created.RoomID)
		joins[i] = join
		for _, s := range state {
			if s.Type == "m.room.power_levels" {
				auths[i] = []id.EventID{s.ID, join.ID}
			}
		}
	}
	target := peer.build(t, rooms[1], joins[1], auths[1], "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "keep me"})
	if errText := peer.send(t, resident, target.JSON()); errText != "" {
		t.Fatalf("message refused: %s", errText)
	}
	content, _ := json.Marshal(map[string]any{"redacts": target.ID})
	redaction, err := pdu.Build(pdu.Proto{Type: "m.room.redaction", Sender: id.UserID("@mallory:" + peer.name), Content: content, RoomID: rooms[0], Redacts: target.ID},
		pdu.BuildArgs{Version: "12", AuthEvents: auths[0], PrevEvents: []id.EventID{joins[0].ID}, Depth: joins[0].Depth + 1,
			Timestamp: time.Now().UnixMilli(), ServerName: peer.name, KeyID: peer.key.ID, Key: peer.key.Priv})
	if err != nil {
		t.Fatal(err)
	}
	peer.send(t, resident, redaction.JSON())
	got, err := alice.GetEvent(ctx, rooms[1], target.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Content.Raw["body"] != "keep me" {
		t.Errorf("a redaction in another room redacted the message: content %v", got.Content.Raw)
	}
	waitMessages(t, alice, rooms[1], []string{"keep me"})

	// From room version 11 the target is content.redacts; a top-level
	// redacts that says otherwise is not followed.
	named := peer.build(t, rooms[0], joins[0], auths[0], "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "named in content"})
	decoy := peer.build(t, rooms[0], named, auths[0], "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "named at top level"})
	for _, e := range []*pdu.Event{named, decoy} {
		if errText := peer.send(t, resident, e.JSON()); errText != "" {
			t.Fatalf("message refused: %s", errText)
		}
	}
	var p mpdu.PDU
	content, _ = json.Marshal(map[string]any{"redacts": named.ID})
	p = mpdu.PDU{Type: "m.room.redaction", Sender: id.UserID("@mallory:" + peer.name), Content: content, RoomID: rooms[0],
		Redacts: &decoy.ID, AuthEvents: auths[0], PrevEvents: []id.EventID{decoy.ID}, Depth: decoy.Depth + 1, OriginServerTS: time.Now().UnixMilli()}
	if err := p.Sign("12", peer.name, peer.key.ID, peer.key.Priv); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(&p)
	if errText := peer.send(t, resident, raw); errText != "" {
		t.Fatalf("redaction refused: %s", errText)
	}
	waitMessages(t, alice, rooms[0], []string{"named at top level"})
}
