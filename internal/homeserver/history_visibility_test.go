package homeserver_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// visibilities are the four values of m.room.history_visibility.
var visibilities = []string{"world_readable", "shared", "invited", "joined"}

// visibleMessages is what a user who was invited after "before invite"
// and joined after "while invited" may read under each visibility.
var visibleMessages = map[string][]string{
	"world_readable": {"before invite", "while invited", "after join"},
	"shared":         {"before invite", "while invited", "after join"},
	"invited":        {"while invited", "after join"},
	"joined":         {"after join"},
}

// historyRoom makes a room with the given history visibility in which
// alice sends "before invite", invites invitee, sends "while invited",
// lets join (which joins invitee) and sends "after join". It returns the
// room and the event ID of each message.
func historyRoom(t *testing.T, alice *mautrix.Client, vis string, invitee id.UserID, join func(id.RoomID)) (id.RoomID, map[string]id.EventID) {
	t.Helper()
	ctx := context.Background()
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	roomID := created.RoomID
	if _, err := alice.SendStateEvent(ctx, roomID, event.StateHistoryVisibility, "", map[string]string{"history_visibility": vis}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]id.EventID{}
	send := func(body string) {
		resp, err := alice.SendText(ctx, roomID, body)
		if err != nil {
			t.Fatal(err)
		}
		ids[body] = resp.EventID
	}
	send("before invite")
	if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: invitee}); err != nil {
		t.Fatal(err)
	}
	send("while invited")
	join(roomID)
	send("after join")
	return roomID, ids
}

// TestHistoryVisibilityLocalUsers: /messages and /event show a local user
// only the history each visibility allows, and a user who never joined
// only world_readable history.
func TestHistoryVisibilityLocalUsers(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob, carol := hs.Client("alice"), hs.Client("bob"), hs.Client("carol")
		for _, vis := range visibilities {
			t.Run(vis, func(t *testing.T) {
				roomID, ids := historyRoom(t, alice, vis, bob.UserID, func(roomID id.RoomID) {
					if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
						t.Fatal(err)
					}
				})
				got, err := messagesIn(ctx, bob, roomID)
				if err != nil {
					t.Fatal(err)
				}
				if want := visibleMessages[vis]; !slices.Equal(got, want) {
					t.Errorf("bob's /messages: %q, want %q", got, want)
				}
				// bob's first sync after joining shows the same.
				resp, err := bob.SyncRequest(ctx, 0, "", `{"room":{"timeline":{"limit":50}}}`, false, "")
				if err != nil {
					t.Fatal(err)
				}
				var synced []string
				for _, ev := range resp.Rooms.Join[roomID].Timeline.Events {
					if body, ok := ev.Content.Raw["body"].(string); ok {
						synced = append(synced, body)
					}
				}
				if want := visibleMessages[vis]; !slices.Equal(synced, want) {
					t.Errorf("bob's /sync timeline: %q, want %q", synced, want)
				}
				for body, evID := range ids {
					_, err := bob.GetEvent(ctx, roomID, evID)
					if slices.Contains(visibleMessages[vis], body) {
						if err != nil {
							t.Errorf("bob cannot get %q: %v", body, err)
						}
					} else {
						mustErrcode(t, err, "M_NOT_FOUND")
					}
				}
				// carol never joined: only world_readable history is open.
				got, err = messagesIn(ctx, carol, roomID)
				if vis == "world_readable" {
					if err != nil || !slices.Equal(got, visibleMessages[vis]) {
						t.Errorf("carol peeking: %q, %v", got, err)
					}
					if _, err := carol.GetEvent(ctx, roomID, ids["before invite"]); err != nil {
						t.Errorf("carol peeking /event: %v", err)
					}
				} else {
					mustErrcode(t, err, "M_FORBIDDEN")
					_, err := carol.GetEvent(ctx, roomID, ids["after join"])
					mustErrcode(t, err, "M_NOT_FOUND")
				}
			})
		}
	})
}

// TestMessagesOfForgottenRoom: once a user forgets a room, its history is
// closed to them.
func TestMessagesOfForgottenRoom(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob := hs.Client("alice"), hs.Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoomByID(ctx, created.RoomID); err != nil {
			t.Fatal(err)
		}
		sent, err := bob.SendText(ctx, created.RoomID, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.LeaveRoom(ctx, created.RoomID); err != nil {
			t.Fatal(err)
		}
		// After leaving, the history up to the departure stays readable.
		if got, err := messagesIn(ctx, bob, created.RoomID); err != nil || !slices.Equal(got, []string{"hello"}) {
			t.Fatalf("bob after leaving: %q, %v", got, err)
		}
		if _, err := bob.ForgetRoom(ctx, created.RoomID); err != nil {
			t.Fatal(err)
		}
		_, err = bob.Messages(ctx, created.RoomID, "", "", mautrix.DirectionBackward, nil, 10)
		mustErrcode(t, err, "M_FORBIDDEN")
		_, err = bob.GetEvent(ctx, created.RoomID, sent.EventID)
		mustErrcode(t, err, "M_NOT_FOUND")
	})
}

// TestHistoryVisibilityOverFederation: a user of another server pages
// back (backfill) and sees only the history each visibility allows.
func TestHistoryVisibilityOverFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		for _, vis := range visibilities {
			t.Run(vis, func(t *testing.T) {
				roomID, ids := historyRoom(t, alice, vis, bob.UserID, func(roomID id.RoomID) {
					waitFor(t, "bob's invite", func() (bool, error) {
						_, err := bob.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}})
						return err == nil, err
					})
				})
				want := visibleMessages[vis]
				waitFor(t, "bob to page back through the history he may see", func() (bool, error) {
					got, err := messagesIn(ctx, bob, roomID)
					if err != nil {
						return false, err
					}
					for _, body := range got {
						if !slices.Contains(want, body) {
							t.Fatalf("bob sees %q under %s: %q", body, vis, got)
						}
					}
					return slices.Equal(got, want), fmt.Errorf("have %q", got)
				})
				if !slices.Contains(want, "before invite") {
					_, err := bob.GetEvent(ctx, roomID, ids["before invite"])
					mustErrcode(t, err, "M_NOT_FOUND")
				}
			})
		}
	})
}

// TestHistoryVisibilityForServers: /get_missing_events, /backfill and
// /event give a server the events from before its users joined only as
// redacted copies when the visibility is joined or invited.
func TestHistoryVisibilityForServers(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 1)
		victim := hs[0].Config.ServerName
		alice := hs[0].Client("alice")
		evil := startEvil(t, hs[0].TestCA)
		for _, vis := range visibilities {
			t.Run(vis, func(t *testing.T) {
				created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
				if err != nil {
					t.Fatal(err)
				}
				roomID := created.RoomID
				if _, err := alice.SendStateEvent(ctx, roomID, event.StateHistoryVisibility, "", map[string]string{"history_visibility": vis}); err != nil {
					t.Fatal(err)
				}
				secret, err := alice.SendText(ctx, roomID, "secret")
				if err != nil {
					t.Fatal(err)
				}
				join, state := evil.join(t, victim, roomID)
				var createID id.EventID
				for _, s := range state {
					if s.Type == "m.room.create" {
						createID = s.ID
					}
				}
				after, err := alice.SendText(ctx, roomID, "after")
				if err != nil {
					t.Fatal(err)
				}
				hidden := vis == "joined" || vis == "invited"

				type pdus struct {
					PDUs   []map[string]any `json:"pdus"`
					Events []map[string]any `json:"events"`
				}
				// Before the join, the room holds one message: the secret.
				check := func(what string, evs []map[string]any) {
					t.Helper()
					var msgs []map[string]any
					for _, e := range evs {
						if e["type"] == "m.room.message" {
							msgs = append(msgs, e["content"].(map[string]any))
						}
					}
					switch {
					case len(msgs) != 1:
						t.Errorf("%s: %d messages, want the one", what, len(msgs))
					case hidden && len(msgs[0]) != 0:
						t.Errorf("%s: a server with no member then got the message's content %v", what, msgs[0])
					case !hidden && msgs[0]["body"] != "secret":
						t.Errorf("%s: the message came redacted", what)
					}
				}

				var gme pdus
				if err := evil.client.Do(ctx, victim, "POST", "/_matrix/federation/v1/get_missing_events/"+url.PathEscape(roomID.String()), nil,
					map[string]any{"earliest_events": []id.EventID{createID}, "latest_events": []id.EventID{join.ID}, "limit": 20}, &gme); err != nil {
					t.Fatal(err)
				}
				check("get_missing_events", gme.Events)

				var bf pdus
				if err := evil.client.Do(ctx, victim, "GET", "/_matrix/federation/v1/backfill/"+url.PathEscape(roomID.String()),
					url.Values{"v": {join.ID.String()}, "limit": {"20"}}, nil, &bf); err != nil {
					t.Fatal(err)
				}
				check("backfill", bf.PDUs)

				var one pdus
				if err := evil.client.Do(ctx, victim, "GET", "/_matrix/federation/v1/event/"+url.PathEscape(secret.EventID.String()), nil, nil, &one); err != nil {
					t.Fatal(err)
				}
				check("event", one.PDUs)

				// What was sent after the join is the server's to see.
				var later pdus
				if err := evil.client.Do(ctx, victim, "GET", "/_matrix/federation/v1/event/"+url.PathEscape(after.EventID.String()), nil, nil, &later); err != nil {
					t.Fatal(err)
				}
				if len(later.PDUs) != 1 || later.PDUs[0]["content"].(map[string]any)["body"] != "after" {
					t.Errorf("event after the join: %v", later.PDUs)
				}
			})
		}
	})
}

// TestMessagesBackfillsUntilCreate: paging back through a long history
// that another server holds goes on past the first backfilled batch, to
// the room's create event.
func TestMessagesBackfillsUntilCreate(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) { pageBackThroughRemoteHistory(t, engine, 150, 300) })
}

// TestMembersAt: /members?at= answers the membership as of a token, and
// membership / not_membership filter it.
func TestMembersAt(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob, carol := hs.Client("alice"), hs.Client("bob"), hs.Client("carol")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		sync, err := alice.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		at := sync.NextBatch
		if _, err := carol.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		members := func(req mautrix.ReqMembers) []string {
			t.Helper()
			resp, err := alice.Members(ctx, roomID, req)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, ev := range resp.Chunk {
				out = append(out, ev.GetStateKey()[1:2]+"="+string(ev.Content.AsMember().Membership))
			}
			sort.Strings(out)
			return out
		}
		cases := []struct {
			name string
			req  mautrix.ReqMembers
			want []string
		}{
			{"now", mautrix.ReqMembers{}, []string{"a=join", "b=leave", "c=join"}},
			{"at", mautrix.ReqMembers{At: at}, []string{"a=join", "b=join"}},
			{"at joined", mautrix.ReqMembers{At: at, Membership: event.MembershipJoin}, []string{"a=join", "b=join"}},
			{"joined", mautrix.ReqMembers{Membership: event.MembershipJoin}, []string{"a=join", "c=join"}},
			{"not left", mautrix.ReqMembers{NotMembership: event.MembershipLeave}, []string{"a=join", "c=join"}},
			{"at not joined", mautrix.ReqMembers{At: at, NotMembership: event.MembershipJoin}, nil},
		}
		for _, c := range cases {
			if got := members(c.req); !slices.Equal(got, c.want) {
				t.Errorf("%s: %q, want %q", c.name, got, c.want)
			}
		}

		// Under joined visibility, the room before dave joined is not his
		// to see, its members included.
		if _, err := alice.SendStateEvent(ctx, roomID, event.StateHistoryVisibility, "", map[string]string{"history_visibility": "joined"}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendText(ctx, roomID, "members only"); err != nil {
			t.Fatal(err)
		}
		sync, err = alice.SyncRequest(ctx, 0, sync.NextBatch, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		dave := hs.Client("dave")
		if _, err := dave.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		_, err = dave.Members(ctx, roomID, mautrix.ReqMembers{At: sync.NextBatch})
		mustErrcode(t, err, "M_NOT_FOUND")
		if _, err := dave.Members(ctx, roomID); err != nil {
			t.Errorf("dave's members now: %v", err)
		}
	})
}
