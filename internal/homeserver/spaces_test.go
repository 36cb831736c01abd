package homeserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// spaceFixture is a space on hs[0] holding, in the spec's order:
// a restricted room allowing the space, a local public encrypted room, a
// subspace with a world-readable room, a public room on hs[1] that hs[0]
// is not in, a space on hs[1] with a public and an invite-only room, and an
// invite-only room, and a knockable room.
type spaceFixture struct {
	hs                                        []*mxtest.Server
	alice, frank, eve, bob                    *mautrix.Client
	space, restricted, local, sub, deep, priv id.RoomID
	knock                                     id.RoomID
	remote, remoteSpace, remoteChild          id.RoomID
}

func newSpaceFixture(t *testing.T, engine string) *spaceFixture {
	t.Helper()
	ctx := context.Background()
	f := &spaceFixture{hs: mxtest.Federation(t, engine, 2)}
	f.alice, f.frank, f.eve = f.hs[0].Client("alice"), f.hs[0].Client("frank"), f.hs[0].Client("eve")
	f.bob = f.hs[1].Client("bob")
	hs0, hs1 := f.hs[0].Config.ServerName, f.hs[1].Config.ServerName
	create := func(c *mautrix.Client, req *mautrix.ReqCreateRoom) id.RoomID {
		t.Helper()
		resp, err := c.CreateRoom(ctx, req)
		if err != nil {
			t.Fatalf("creating %q: %v", req.Name, err)
		}
		return resp.RoomID
	}
	space := map[string]any{"type": "m.space"}
	f.space = create(f.alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Space", CreationContent: space})
	f.restricted = create(f.alice, &mautrix.ReqCreateRoom{Name: "Restricted", RoomVersion: "10", InitialState: []*event.Event{{
		Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": f.space.String()}},
		}},
	}}})
	f.local = create(f.alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Local", Topic: "local talk", InitialState: []*event.Event{{
		Type: event.StateEncryption, Content: event.Content{Raw: map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}},
	}}})
	f.sub = create(f.alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Sub", CreationContent: space})
	f.deep = create(f.alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Deep", InitialState: []*event.Event{{
		Type: event.StateHistoryVisibility, Content: event.Content{Raw: map[string]any{"history_visibility": "world_readable"}},
	}}})
	f.priv = create(f.alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Private"})
	f.knock = create(f.alice, &mautrix.ReqCreateRoom{Name: "Knock", InitialState: []*event.Event{{
		Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{"join_rule": "knock"}},
	}}})
	f.remote = create(f.bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Remote"})
	f.remoteSpace = create(f.bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "RemoteSpace", CreationContent: space})
	f.remoteChild = create(f.bob, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "RemoteChild"})
	remoteSecret := create(f.bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "RemoteSecret"})
	for _, c := range []id.RoomID{f.remoteChild, remoteSecret} {
		if _, err := f.bob.SendStateEvent(ctx, f.remoteSpace, event.StateSpaceChild, c.String(), map[string]any{"via": []string{hs1}}); err != nil {
			t.Fatal(err)
		}
	}
	child := func(parent, c id.RoomID, content map[string]any) {
		t.Helper()
		if _, err := f.alice.SendStateEvent(ctx, parent, event.StateSpaceChild, c.String(), content); err != nil {
			t.Fatalf("adding child %s: %v", c, err)
		}
	}
	via := []string{hs0}
	// Sent out of order: the walk orders by order, then timestamp.
	child(f.space, f.priv, map[string]any{"via": via})
	child(f.space, f.knock, map[string]any{"via": via, "order": "f"})
	child(f.space, f.remote, map[string]any{"via": []string{hs1}, "order": "d", "suggested": true})
	child(f.space, f.remoteSpace, map[string]any{"via": []string{"unreachable.invalid", hs1}, "order": "e"})
	child(f.space, f.sub, map[string]any{"via": via, "order": "c"})
	child(f.space, f.local, map[string]any{"via": via, "order": "b", "suggested": true})
	child(f.space, f.restricted, map[string]any{"via": via, "order": "a"})
	// No via: not a child.
	child(f.space, id.RoomID("!gone:"+hs0), map[string]any{})
	child(f.sub, f.deep, map[string]any{"via": via})
	// A loop back to the top, which the walk must not follow twice.
	child(f.sub, f.space, map[string]any{"via": via})
	if _, err := f.frank.JoinRoom(ctx, f.space.String(), nil); err != nil {
		t.Fatalf("frank joins the space: %v", err)
	}
	return f
}

// hierarchyNames returns the names of the rooms of every page of cli's
// walk from root, and how many pages it took.
func hierarchyNames(t *testing.T, cli *mautrix.Client, root id.RoomID, req mautrix.ReqHierarchy) ([]string, int) {
	t.Helper()
	var names []string
	pages := 0
	for {
		resp, err := cli.Hierarchy(context.Background(), root, &req)
		if err != nil {
			t.Fatalf("%s: hierarchy of %s: %v", cli.UserID, root, err)
		}
		pages++
		for _, r := range resp.Rooms {
			names = append(names, r.Name)
		}
		if resp.NextBatch == "" {
			return names, pages
		}
		req.From = resp.NextBatch
	}
}

func TestSpaceHierarchy(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		f := newSpaceFixture(t, engine)
		all := []string{"Space", "Restricted", "Local", "Sub", "Deep", "Remote", "RemoteSpace", "RemoteChild", "Knock", "Private"}
		for _, tc := range []struct {
			name string
			cli  *mautrix.Client
			req  mautrix.ReqHierarchy
			want []string
		}{
			{"creator sees every room", f.alice, mautrix.ReqHierarchy{}, all},
			{"space member sees the restricted room", f.frank, mautrix.ReqHierarchy{}, []string{"Space", "Restricted", "Local", "Sub", "Deep", "Remote", "RemoteSpace", "RemoteChild", "Knock"}},
			{"non-member sees open rooms only", f.eve, mautrix.ReqHierarchy{}, []string{"Space", "Local", "Sub", "Deep", "Remote", "RemoteSpace", "RemoteChild", "Knock"}},
			{"suggested only", f.frank, mautrix.ReqHierarchy{SuggestedOnly: true}, []string{"Space", "Local", "Remote"}},
			{"max depth 1", f.alice, mautrix.ReqHierarchy{MaxDepth: ptr(1)}, []string{"Space", "Restricted", "Local", "Sub", "Remote", "RemoteSpace", "Knock", "Private"}},
			{"max depth 0", f.alice, mautrix.ReqHierarchy{MaxDepth: ptr(0)}, []string{"Space"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, _ := hierarchyNames(t, tc.cli, f.space, tc.req)
				if !slices.Equal(got, tc.want) {
					t.Errorf("rooms = %q, want %q", got, tc.want)
				}
			})
		}

		t.Run("entries", func(t *testing.T) {
			resp, err := f.alice.Hierarchy(ctx, f.space, &mautrix.ReqHierarchy{})
			if err != nil {
				t.Fatal(err)
			}
			by := map[string]*mautrix.ChildRoomsChunk{}
			for _, r := range resp.Rooms {
				by[r.Name] = r
			}
			sp := by["Space"]
			if sp.RoomType != event.RoomTypeSpace || sp.JoinRule != "public" || sp.NumJoinedMembers != 2 || len(sp.ChildrenState) != 7 {
				t.Errorf("space entry = %+v with %d children", sp.PublicRoomInfo, len(sp.ChildrenState))
			}
			for _, c := range sp.ChildrenState {
				if c.Timestamp == 0 || c.Sender != f.alice.UserID || c.Type != event.StateSpaceChild {
					t.Errorf("child event %+v lacks origin_server_ts, sender or type", c)
				}
			}
			if r := by["Restricted"]; r.JoinRule != "restricted" || r.RoomVersion != "10" || !slices.Equal(r.AllowedRoomIDs, []id.RoomID{f.space}) {
				t.Errorf("restricted entry = %+v", r.PublicRoomInfo)
			}
			if l := by["Local"]; l.Encryption != "m.megolm.v1.aes-sha2" || l.Topic != "local talk" || l.RoomVersion == "" || l.ChildrenState == nil {
				t.Errorf("local entry = %+v", l.PublicRoomInfo)
			}
			if d := by["Deep"]; !d.WorldReadable || d.JoinRule != "invite" {
				t.Errorf("deep entry = %+v", d.PublicRoomInfo)
			}
			if r := by["Remote"]; r.RoomID != f.remote || r.NumJoinedMembers != 1 || r.JoinRule != "public" {
				t.Errorf("remote entry = %+v", r.PublicRoomInfo)
			}
		})

		t.Run("pagination", func(t *testing.T) {
			got, pages := hierarchyNames(t, f.alice, f.space, mautrix.ReqHierarchy{Limit: 2})
			if !slices.Equal(got, all) || pages != 5 {
				t.Errorf("paged rooms = %q in %d pages, want %q in 5", got, pages, all)
			}
			first, err := f.alice.Hierarchy(ctx, f.space, &mautrix.ReqHierarchy{Limit: 2})
			if err != nil || first.NextBatch == "" {
				t.Fatalf("first page = %+v, %v", first, err)
			}
			// The same token again gives the same page.
			a, errA := f.alice.Hierarchy(ctx, f.space, &mautrix.ReqHierarchy{Limit: 2, From: first.NextBatch})
			b, errB := f.alice.Hierarchy(ctx, f.space, &mautrix.ReqHierarchy{Limit: 2, From: first.NextBatch})
			if errA != nil || errB != nil || len(a.Rooms) != 2 || a.Rooms[0].Name != "Local" || b.Rooms[0].Name != "Local" {
				t.Errorf("second page twice = %+v (%v), %+v (%v)", a, errA, b, errB)
			}
			for name, req := range map[string]mautrix.ReqHierarchy{
				"unknown token":     {From: "nonsense"},
				"changed max_depth": {From: first.NextBatch, MaxDepth: ptr(3)},
				"changed suggested": {From: first.NextBatch, SuggestedOnly: true},
			} {
				_, err := f.alice.Hierarchy(ctx, f.space, &req)
				if !errors.Is(err, mautrix.MInvalidParam) {
					t.Errorf("%s: %v, want M_INVALID_PARAM", name, err)
				}
			}
			if _, err := f.eve.Hierarchy(ctx, f.space, &mautrix.ReqHierarchy{From: first.NextBatch}); !errors.Is(err, mautrix.MInvalidParam) {
				t.Errorf("another user's token: %v, want M_INVALID_PARAM", err)
			}
		})

		t.Run("forbidden roots", func(t *testing.T) {
			if _, err := f.eve.Hierarchy(ctx, f.priv, nil); !errors.Is(err, mautrix.MForbidden) {
				t.Errorf("private root for a non-member: %v, want M_FORBIDDEN", err)
			}
			unknown := id.RoomID("!unknown:" + f.hs[0].Config.ServerName)
			if _, err := f.eve.Hierarchy(ctx, unknown, nil); !errors.Is(err, mautrix.MForbidden) {
				t.Errorf("unknown root: %v, want M_FORBIDDEN (space_hierarchy.yaml lists it under 403)", err)
			}
			// A member who leaves a private space between pages sees no
			// more of it.
			inner, err := f.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Inner",
				CreationContent: map[string]any{"type": "m.space"}, Invite: []id.UserID{f.frank.UserID}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.alice.SendStateEvent(ctx, inner.RoomID, event.StateSpaceChild, f.local.String(),
				map[string]any{"via": []string{f.hs[0].Config.ServerName}}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.frank.JoinRoom(ctx, inner.RoomID.String(), nil); err != nil {
				t.Fatal(err)
			}
			page, err := f.frank.Hierarchy(ctx, inner.RoomID, &mautrix.ReqHierarchy{Limit: 1})
			if err != nil || page.NextBatch == "" {
				t.Fatalf("first page of the private space = %+v, %v", page, err)
			}
			if _, err := f.frank.LeaveRoom(ctx, inner.RoomID); err != nil {
				t.Fatal(err)
			}
			if _, err := f.frank.Hierarchy(ctx, inner.RoomID, &mautrix.ReqHierarchy{Limit: 1, From: page.NextBatch}); !errors.Is(err, mautrix.MForbidden) {
				t.Errorf("next page after leaving: %v, want M_FORBIDDEN", err)
			}
			for _, q := range []map[string]string{{"limit": "0"}, {"max_depth": "-1"}, {"suggested_only": "yes"}} {
				u := f.alice.BuildURLWithQuery(mautrix.ClientURLPath{"v1", "rooms", f.space, "hierarchy"}, q)
				if _, err := f.alice.MakeRequest(ctx, http.MethodGet, u, nil, nil); !errors.Is(err, mautrix.MInvalidParam) {
					t.Errorf("%v: %v, want M_INVALID_PARAM", q, err)
				}
			}
		})

		t.Run("federation endpoint", func(t *testing.T) {
			fed := federationClientOf(t, f.hs[1])
			hs0 := f.hs[0].Config.ServerName
			ids := func(resp fedclient.SpaceHierarchyResp) (children []id.RoomID) {
				for _, raw := range resp.Children {
					var c struct {
						RoomID id.RoomID `json:"room_id"`
					}
					if err := json.Unmarshal(raw, &c); err != nil {
						t.Fatal(err)
					}
					children = append(children, c.RoomID)
				}
				return children
			}
			resp, err := fed.GetSpaceHierarchy(ctx, hs0, f.space, false)
			if err != nil {
				t.Fatal(err)
			}
			var room struct {
				RoomID        id.RoomID         `json:"room_id"`
				ChildrenState []json.RawMessage `json:"children_state"`
			}
			if err := json.Unmarshal(resp.Room, &room); err != nil || room.RoomID != f.space || len(room.ChildrenState) != 7 {
				t.Errorf("room = %+v, %v", room, err)
			}
			// hs[1] is in no room the restricted room allows, and not in
			// the private room; hs[0] is not in the remote room.
			if got, want := ids(resp), []id.RoomID{f.local, f.sub, f.knock}; !slices.Equal(got, want) {
				t.Errorf("children = %v, want %v", got, want)
			}
			if got := resp.InaccessibleChildren; !slices.Equal(sorted(got), sorted([]id.RoomID{f.restricted, f.priv})) {
				t.Errorf("inaccessible = %v", got)
			}
			// Once a user of hs[1] is in the space, hs[1] may see the
			// restricted room.
			if _, err := f.bob.JoinRoom(ctx, f.space.String(), &mautrix.ReqJoinRoom{Via: []string{hs0}}); err != nil {
				t.Fatal(err)
			}
			resp, err = fed.GetSpaceHierarchy(ctx, hs0, f.space, false)
			if err != nil || !slices.Equal(ids(resp), []id.RoomID{f.restricted, f.local, f.sub, f.knock}) || !slices.Equal(resp.InaccessibleChildren, []id.RoomID{f.priv}) {
				t.Errorf("after joining: children %v, inaccessible %v, %v", ids(resp), resp.InaccessibleChildren, err)
			}
			resp, err = fed.GetSpaceHierarchy(ctx, hs0, f.space, true)
			if err != nil || !slices.Equal(ids(resp), []id.RoomID{f.local}) {
				t.Errorf("suggested only: children %v, %v", ids(resp), err)
			}
			if _, err := fed.GetSpaceHierarchy(ctx, hs0, f.priv, false); !fedclient.IsStatus(err, http.StatusNotFound) {
				t.Errorf("private room: %v, want 404", err)
			}
			if _, err := fed.GetSpaceHierarchy(ctx, hs0, id.RoomID("!unknown:"+hs0), false); !fedclient.IsStatus(err, http.StatusNotFound) {
				t.Errorf("unknown room: %v, want 404", err)
			}
		})
	})
}

func TestRoomSummary(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		f := newSpaceFixture(t, engine)
		hs1 := f.hs[1].Config.ServerName
		alias := id.RoomAlias("#local:" + f.hs[0].Config.ServerName)
		if _, err := f.alice.CreateAlias(ctx, alias, f.local); err != nil {
			t.Fatal(err)
		}
		anon := f.hs[0].Anonymous()
		for _, tc := range []struct {
			name           string
			cli            *mautrix.Client
			room           string
			via            []string
			wantName       string
			wantMembership event.Membership
		}{
			{"member", f.alice, f.local.String(), nil, "Local", "join"},
			{"by alias", f.eve, alias.String(), nil, "Local", "leave"},
			{"unauthenticated, public", anon, f.local.String(), nil, "Local", ""},
			{"unauthenticated, world-readable", anon, f.deep.String(), nil, "Deep", ""},
			{"unauthenticated, knockable", anon, f.knock.String(), nil, "Knock", ""},
			{"restricted, member of the allowed room", f.frank, f.restricted.String(), nil, "Restricted", "leave"},
			{"remote room over federation", f.eve, f.remote.String(), []string{hs1}, "Remote", "leave"},
			{"unauthenticated, remote room", anon, f.remote.String(), []string{hs1}, "Remote", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := tc.cli.GetRoomSummary(ctx, tc.room, tc.via...)
				if err != nil {
					t.Fatal(err)
				}
				if got.Name != tc.wantName || got.Membership != tc.wantMembership || got.RoomVersion == "" {
					t.Errorf("summary = %+v", got)
				}
			})
		}
		if got, err := f.alice.GetRoomSummary(ctx, f.local.String()); err != nil || got.Encryption != "m.megolm.v1.aes-sha2" || got.NumJoinedMembers != 1 {
			t.Errorf("encryption and members: %+v, %v", got, err)
		}
		for _, tc := range []struct {
			name string
			cli  *mautrix.Client
			room string
		}{
			{"private room, non-member", f.eve, f.priv.String()},
			{"restricted room, non-member", f.eve, f.restricted.String()},
			{"restricted room, unauthenticated", anon, f.restricted.String()},
			{"unknown room", f.eve, "!unknown:" + f.hs[0].Config.ServerName},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := tc.cli.GetRoomSummary(ctx, tc.room); !errors.Is(err, mautrix.MNotFound) {
					t.Errorf("%v, want M_NOT_FOUND", err)
				}
			})
		}
		t.Run("invited", func(t *testing.T) {
			if _, err := f.alice.InviteUser(ctx, f.priv, &mautrix.ReqInviteUser{UserID: f.eve.UserID}); err != nil {
				t.Fatal(err)
			}
			if got, err := f.eve.GetRoomSummary(ctx, f.priv.String()); err != nil || got.Membership != "invite" || got.Name != "Private" {
				t.Errorf("summary for an invitee = %+v, %v", got, err)
			}
			// A room on another server that eve is invited to: that server
			// answers for a server with an invited user, and eve's server
			// shows it to eve only.
			secret, err := f.bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Bob's secret"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.eve.GetRoomSummary(ctx, secret.RoomID.String(), hs1); !errors.Is(err, mautrix.MNotFound) {
				t.Errorf("remote private room before the invite: %v, want M_NOT_FOUND", err)
			}
			if _, err := f.bob.InviteUser(ctx, secret.RoomID, &mautrix.ReqInviteUser{UserID: f.eve.UserID}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "eve to see the remote room's summary", func() (bool, error) {
				got, err := f.eve.GetRoomSummary(ctx, secret.RoomID.String(), hs1)
				return err == nil && got.Name == "Bob's secret" && got.Membership == "invite", err
			})
			if _, err := f.frank.GetRoomSummary(ctx, secret.RoomID.String(), hs1); !errors.Is(err, mautrix.MNotFound) {
				t.Errorf("remote private room for a user who is not invited: %v, want M_NOT_FOUND", err)
			}
		})
		// The stable path answers too.
		var stable map[string]any
		u := f.alice.BuildClientURL("v1", "room_summary", f.local)
		if _, err := f.alice.MakeRequest(ctx, http.MethodGet, u, nil, &stable); err != nil || stable["membership"] != "join" || stable["room_version"] == nil {
			t.Errorf("stable path = %v, %v", stable, err)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func sorted[T ~string](s []T) []T {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestSpaceHierarchyRemoteBudget: a space whose children are on servers
// that do not answer ends its page once it has asked other servers
// enough, and the walk goes on in the next page instead of hanging.
func TestSpaceHierarchyRemoteBudget(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		space, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Space", CreationContent: map[string]any{"type": "m.space"}})
		if err != nil {
			t.Fatal(err)
		}
		last, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Last"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 25 {
			gone := id.RoomID(fmt.Sprintf("!gone%d:unreachable.invalid", i))
			if _, err := alice.SendStateEvent(ctx, space.RoomID, event.StateSpaceChild, gone.String(),
				map[string]any{"via": []string{"unreachable.invalid"}, "order": fmt.Sprintf("a%02d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := alice.SendStateEvent(ctx, space.RoomID, event.StateSpaceChild, last.RoomID.String(),
			map[string]any{"via": []string{srv.Config.ServerName}, "order": "z"}); err != nil {
			t.Fatal(err)
		}
		got, pages := hierarchyNames(t, alice, space.RoomID, mautrix.ReqHierarchy{})
		if !slices.Equal(got, []string{"Space", "Last"}) || pages < 2 {
			t.Errorf("rooms = %q in %d pages, want Space and Last in 2 or more", got, pages)
		}
	})
}
