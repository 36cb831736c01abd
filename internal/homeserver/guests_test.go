package homeserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

func allowGuests(c *config.Config) { c.AllowGuestAccess = true }

// errGuestAccessForbidden is M_GUEST_ACCESS_FORBIDDEN, which mautrix has
// no value for.
var errGuestAccessForbidden = mautrix.RespError{ErrCode: "M_GUEST_ACCESS_FORBIDDEN", StatusCode: http.StatusForbidden}

// registerGuest registers a guest account on srv.
func registerGuest(t *testing.T, srv *mxtest.Server) *mautrix.Client {
	t.Helper()
	cli := srv.Anonymous()
	resp, _, err := cli.RegisterGuest(context.Background(), &mautrix.ReqRegister[any]{Username: "ignored", InitialDeviceDisplayName: "guest phone"})
	if err != nil {
		t.Fatalf("registering a guest: %v", err)
	}
	cli.UserID, cli.AccessToken, cli.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return cli
}

// whoami is GET /account/whoami with is_guest, which mautrix does not
// decode.
func whoami(cli *mautrix.Client) (struct {
	UserID  id.UserID `json:"user_id"`
	IsGuest bool      `json:"is_guest"`
}, error) {
	var out struct {
		UserID  id.UserID `json:"user_id"`
		IsGuest bool      `json:"is_guest"`
	}
	_, err := cli.MakeRequest(context.Background(), http.MethodGet, cli.BuildClientURL("v3", "account", "whoami"), nil, &out)
	return out, err
}

// rawRegister posts body to /register, completing m.login.dummy when the
// server asks for it, and returns the status and the decoded answer.
func rawRegister(t *testing.T, srv *mxtest.Server, body map[string]any) (int, map[string]any) {
	t.Helper()
	post := func(b map[string]any) (int, map[string]any) {
		raw, _ := json.Marshal(b)
		resp, err := http.Post(srv.URL+"/_matrix/client/v3/register", "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, out := post(body)
	if status != http.StatusUnauthorized || out["session"] == nil {
		return status, out
	}
	body["auth"] = map[string]any{"type": "m.login.dummy", "session": out["session"]}
	return post(body)
}

func TestGuestRegistrationOffByDefault(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		_, _, err := srv.Anonymous().RegisterGuest(context.Background(), &mautrix.ReqRegister[any]{})
		if !errors.Is(err, errGuestAccessForbidden) {
			t.Fatalf("guest registration with allow_guest_access off: %v, want M_GUEST_ACCESS_FORBIDDEN", err)
		}
	})
}

func TestGuestAccess(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine, allowGuests)
		alice := srv.Client("alice")
		guest := registerGuest(t, srv)

		create := func(name string, state ...*event.Event) id.RoomID {
			t.Helper()
			resp, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: name, InitialState: state})
			if err != nil {
				t.Fatal(err)
			}
			return resp.RoomID
		}
		guestsJoin := &event.Event{Type: event.StateGuestAccess, Content: event.Content{Raw: map[string]any{"guest_access": "can_join"}}}
		worldReadable := &event.Event{Type: event.StateHistoryVisibility, Content: event.Content{Raw: map[string]any{"history_visibility": "world_readable"}}}
		open := create("Open to guests", guestsJoin)
		closed := create("Members only")
		readable := create("Readable", worldReadable)
		if _, err := alice.SendText(ctx, readable, "for everyone to read"); err != nil {
			t.Fatal(err)
		}

		t.Run("registration", func(t *testing.T) {
			who, err := whoami(guest)
			if err != nil || !who.IsGuest || who.UserID != guest.UserID || guest.UserID.Localpart() == "ignored" {
				t.Fatalf("whoami = %+v, %v", who, err)
			}
			dev, err := guest.GetDevicesInfo(ctx)
			if err != nil || len(dev.Devices) != 1 || dev.Devices[0].DisplayName != "guest phone" {
				t.Errorf("devices = %+v, %v", dev, err)
			}
		})

		t.Run("endpoints outside the guest list are refused", func(t *testing.T) {
			for name, call := range map[string]func() error{
				"createRoom": func() error {
					_, err := guest.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
					return err
				},
				"avatar_url": func() error { return guest.SetAvatarURL(ctx, id.ContentURI{Homeserver: "x", FileID: "y"}) },
				"joined_rooms": func() error {
					_, err := guest.JoinedRooms(ctx)
					return err
				},
				"join by alias path": func() error {
					_, err := guest.JoinRoom(ctx, open.String(), nil)
					return err
				},
				"account data": func() error { return guest.SetAccountData(ctx, "m.example", map[string]any{}) },
			} {
				if err := call(); !errors.Is(err, errGuestAccessForbidden) {
					t.Errorf("%s: %v, want M_GUEST_ACCESS_FORBIDDEN", name, err)
				}
			}
			if err := guest.SetDisplayName(ctx, "Visitor"); err != nil {
				t.Errorf("setting the display name: %v", err)
			}
		})

		t.Run("reading a world-readable room", func(t *testing.T) {
			got, err := messagesIn(ctx, guest, readable)
			if err != nil || len(got) != 1 || got[0] != "for everyone to read" {
				t.Errorf("messages = %q, %v", got, err)
			}
			if _, err := guest.State(ctx, readable); err != nil {
				t.Errorf("state: %v", err)
			}
			if _, err := messagesIn(ctx, guest, closed); !errors.Is(err, mautrix.MForbidden) {
				t.Errorf("messages of a room that is not world-readable: %v, want M_FORBIDDEN", err)
			}
		})

		t.Run("joining", func(t *testing.T) {
			if _, err := guest.JoinRoomByID(ctx, closed); !errors.Is(err, mautrix.MForbidden) {
				t.Errorf("joining a room without guest access: %v, want M_FORBIDDEN", err)
			}
			if _, err := guest.JoinRoomByID(ctx, open); err != nil {
				t.Fatalf("joining a room with guest access: %v", err)
			}
			if _, err := guest.SendText(ctx, open, "hello from a guest"); err != nil {
				t.Errorf("sending as a guest: %v", err)
			}
			if _, err := guest.SyncRequest(ctx, 0, "", "", false, event.PresenceOnline); err != nil {
				t.Errorf("syncing as a guest: %v", err)
			}
		})

		t.Run("revoking guest access removes guests", func(t *testing.T) {
			if _, err := alice.SendStateEvent(ctx, open, event.StateGuestAccess, "", map[string]any{"guest_access": "forbidden"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the guest to leave", func() (bool, error) {
				var m event.MemberEventContent
				err := alice.StateEvent(ctx, open, event.StateMember, guest.UserID.String(), &m)
				return err == nil && m.Membership == event.MembershipLeave, err
			})
			if _, err := guest.JoinRoomByID(ctx, open); !errors.Is(err, mautrix.MForbidden) {
				t.Errorf("joining again: %v, want M_FORBIDDEN", err)
			}
			// A full member of the room stays.
			if m, err := alice.JoinedMembers(ctx, open); err != nil || len(m.Joined) != 1 {
				t.Errorf("members after revoking = %+v, %v", m, err)
			}
		})

		t.Run("upgrade", func(t *testing.T) {
			other := registerGuest(t, srv)
			for name, body := range map[string]map[string]any{
				"wrong username":    {"username": "someoneelse", "password": "pw-upgraded", "guest_access_token": other.AccessToken},
				"no username":       {"password": "pw-upgraded", "guest_access_token": other.AccessToken},
				"not a guest token": {"username": alice.UserID.Localpart(), "password": "pw-upgraded", "guest_access_token": alice.AccessToken},
			} {
				if status, out := rawRegister(t, srv, body); status != http.StatusForbidden || out["errcode"] != "M_FORBIDDEN" {
					t.Errorf("%s: %d %v, want 403 M_FORBIDDEN", name, status, out)
				}
			}
			status, out := rawRegister(t, srv, map[string]any{
				"username": guest.UserID.Localpart(), "password": "pw-upgraded", "guest_access_token": guest.AccessToken,
			})
			if status != http.StatusOK || out["user_id"] != guest.UserID.String() {
				t.Fatalf("upgrade: %d %v", status, out)
			}
			full := srv.Anonymous()
			full.UserID, full.AccessToken = guest.UserID, out["access_token"].(string)
			if who, err := whoami(full); err != nil || who.IsGuest || who.UserID != guest.UserID {
				t.Errorf("whoami after upgrade = %+v, %v", who, err)
			}
			// The guest's own token now acts for a full account.
			if _, err := guest.CreateRoom(ctx, &mautrix.ReqCreateRoom{}); err != nil {
				t.Errorf("creating a room with the old token after the upgrade: %v", err)
			}
			srv.Login(guest.UserID, "pw-upgraded")
			// Once a full account, the token is no guest's.
			if status, out := rawRegister(t, srv, map[string]any{
				"username": guest.UserID.Localpart(), "password": "again", "guest_access_token": guest.AccessToken,
			}); status != http.StatusForbidden {
				t.Errorf("upgrading twice: %d %v, want 403", status, out)
			}
		})
	})
}

// TestGuestEvictedByRemoteChange: a change of guest access received over
// federation removes this server's guests too, and a guest may not join a
// room this server is not in.
func TestGuestEvictedByRemoteChange(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2, allowGuests)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		guest := registerGuest(t, hs[0])
		created, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", InitialState: []*event.Event{{
			Type: event.StateGuestAccess, Content: event.Content{Raw: map[string]any{"guest_access": "can_join"}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		if _, err := guest.JoinRoomByID(ctx, roomID); !errors.Is(err, mautrix.MForbidden) {
			t.Errorf("guest joining a room its server is not in: %v, want M_FORBIDDEN", err)
		}
		if _, err := alice.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[1].Config.ServerName}}); err != nil {
			t.Fatal(err)
		}
		if _, err := guest.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatalf("guest joining once its server is in the room: %v", err)
		}
		waitFor(t, "bob to see the guest join", func() (bool, error) {
			m, err := bob.JoinedMembers(ctx, roomID)
			return err == nil && len(m.Joined) == 3, err
		})
		if _, err := bob.SendStateEvent(ctx, roomID, event.StateGuestAccess, "", map[string]any{"guest_access": "forbidden"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "bob to see the guest leave", func() (bool, error) {
			var m event.MemberEventContent
			err := bob.StateEvent(ctx, roomID, event.StateMember, guest.UserID.String(), &m)
			return err == nil && m.Membership == event.MembershipLeave, err
		})
		if m, err := alice.JoinedMembers(ctx, roomID); err != nil || len(m.Joined) != 2 {
			t.Errorf("members after revoking = %+v, %v", m, err)
		}
	})
}
