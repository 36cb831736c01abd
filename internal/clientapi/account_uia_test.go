package clientapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

var passwordFlow = [][]string{{"m.login.password"}}

func TestDeviceManagement(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		ctx := context.Background()
		alice := s.Register("alice", "pw-alice")
		bob := s.Register("bob", "pw-bob")
		phone := s.Login("@alice:localhost", "pw-alice")
		tablet := s.Login("@alice:localhost", "pw-alice")

		devs, err := alice.GetDevicesInfo(ctx)
		if err != nil || len(devs.Devices) != 3 {
			t.Fatalf("GetDevicesInfo = %+v, %v; want 3 devices", devs, err)
		}
		for _, d := range []id.DeviceID{alice.DeviceID, phone.DeviceID, tablet.DeviceID} {
			found := false
			for _, got := range devs.Devices {
				found = found || got.DeviceID == d
			}
			if !found {
				t.Errorf("device %s not listed in %+v", d, devs.Devices)
			}
		}

		if err := alice.SetDeviceInfo(ctx, phone.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "Phone"}); err != nil {
			t.Fatalf("SetDeviceInfo: %v", err)
		}
		dev, err := alice.GetDeviceInfo(ctx, phone.DeviceID)
		if err != nil || dev.DisplayName != "Phone" || dev.DeviceID != phone.DeviceID {
			t.Errorf("GetDeviceInfo after rename = %+v, %v", dev, err)
		}
		// An update without display_name changes nothing.
		st, body := acctReq(t, s, "PUT", "/v3/devices/"+phone.DeviceID.String(), alice.AccessToken, map[string]any{})
		if st != 200 {
			t.Errorf("empty update: %d %v", st, body)
		}
		if dev, _ := alice.GetDeviceInfo(ctx, phone.DeviceID); dev.DisplayName != "Phone" {
			t.Errorf("empty update changed the name to %q", dev.DisplayName)
		}

		_, err = alice.GetDeviceInfo(ctx, "NOSUCHDEV")
		wantMatrixErr(t, "get unknown device", err, 404, "M_NOT_FOUND")
		err = alice.SetDeviceInfo(ctx, "NOSUCHDEV", &mautrix.ReqDeviceInfo{DisplayName: "x"})
		wantMatrixErr(t, "rename unknown device", err, 404, "M_NOT_FOUND")
		// Another user's device is unknown too.
		_, err = bob.GetDeviceInfo(ctx, phone.DeviceID)
		wantMatrixErr(t, "get another user's device", err, 404, "M_NOT_FOUND")
		st, body = acctReq(t, s, "PUT", "/v3/devices/"+phone.DeviceID.String(), alice.AccessToken, map[string]any{"display_name": strings.Repeat("x", 101)})
		acctWantErr(t, "overlong name", st, body, 400, "M_TOO_LARGE")
		st, body = acctReq(t, s, "PUT", "/v3/devices/"+phone.DeviceID.String(), alice.AccessToken, `{"display_name": 3}`)
		acctWantErr(t, "name of the wrong type", st, body, 400, "M_BAD_JSON")
		st, body = acctReq(t, s, "GET", "/v3/devices", "", nil)
		acctWantErr(t, "devices without a token", st, body, 401, "M_MISSING_TOKEN")

		t.Run("delete one", func(t *testing.T) {
			path := "/v3/devices/" + phone.DeviceID.String()
			st, body := acctReq(t, s, "DELETE", path, alice.AccessToken, nil)
			sess := acctWantUIA(t, "no auth", st, body, passwordFlow, "")

			st, body = acctReq(t, s, "DELETE", path, alice.AccessToken, map[string]any{"auth": passwordAuth(sess, "@alice:localhost", "wrong")})
			if got := acctWantUIA(t, "wrong password", st, body, passwordFlow, "M_FORBIDDEN"); got != sess {
				t.Errorf("wrong password: session changed")
			}
			// Bob's password does not authorise deleting Alice's device.
			st, body = acctReq(t, s, "DELETE", path, alice.AccessToken, map[string]any{"auth": passwordAuth(sess, "@bob:localhost", "pw-bob")})
			acctWantErr(t, "another user's password", st, body, 403, "M_FORBIDDEN")
			// The session is bound to its operation.
			st, body = acctReq(t, s, "POST", "/v3/delete_devices", alice.AccessToken, map[string]any{
				"devices": []string{tablet.DeviceID.String()}, "auth": passwordAuth(sess, "@alice:localhost", "pw-alice"),
			})
			acctWantErr(t, "session of another operation", st, body, 403, "M_FORBIDDEN")
			// ... and to its user.
			st, body = acctReq(t, s, "DELETE", path, bob.AccessToken, map[string]any{"auth": passwordAuth(sess, "@bob:localhost", "pw-bob")})
			acctWantErr(t, "session of another user", st, body, 403, "M_FORBIDDEN")
			if _, err := phone.Whoami(ctx); err != nil {
				t.Fatalf("device deleted before auth completed: %v", err)
			}

			st, body = acctReq(t, s, "DELETE", path, alice.AccessToken, map[string]any{"auth": passwordAuth(sess, "alice", "pw-alice")})
			if st != 200 {
				t.Fatalf("delete with password: %d %v", st, body)
			}
			_, err := phone.Whoami(ctx)
			wantMatrixErr(t, "deleted device's token", err, 401, "M_UNKNOWN_TOKEN")
			_, err = alice.GetDeviceInfo(ctx, phone.DeviceID)
			wantMatrixErr(t, "deleted device", err, 404, "M_NOT_FOUND")

			// Deleting it again succeeds, as the spec says.
			err = alice.DeleteDevice(ctx, phone.DeviceID, &mautrix.ReqDeleteDevice[any]{
				Auth: passwordAuth("", "@alice:localhost", "pw-alice"),
			})
			if err != nil {
				t.Errorf("deleting a deleted device: %v", err)
			}
		})

		t.Run("delete many", func(t *testing.T) {
			extra := s.Login("@alice:localhost", "pw-alice")
			st, body := acctReq(t, s, "POST", "/v3/delete_devices", alice.AccessToken, map[string]any{})
			acctWantErr(t, "no devices", st, body, 400, "M_MISSING_PARAM")

			req := map[string]any{"devices": []string{tablet.DeviceID.String(), extra.DeviceID.String()}}
			st, body = acctReq(t, s, "POST", "/v3/delete_devices", alice.AccessToken, req)
			sess := acctWantUIA(t, "no auth", st, body, passwordFlow, "")
			req["auth"] = map[string]any{"type": "m.login.dummy", "session": sess}
			st, body = acctReq(t, s, "POST", "/v3/delete_devices", alice.AccessToken, req)
			acctWantUIA(t, "dummy stage", st, body, passwordFlow, "M_UNRECOGNIZED")

			err := alice.DeleteDevices(ctx, &mautrix.ReqDeleteDevices[any]{
				Devices: []id.DeviceID{tablet.DeviceID, extra.DeviceID},
				Auth:    passwordAuth(sess, "@alice:localhost", "pw-alice"),
			})
			if err != nil {
				t.Fatalf("DeleteDevices: %v", err)
			}
			for _, c := range []*mautrix.Client{tablet, extra} {
				_, err := c.Whoami(ctx)
				wantMatrixErr(t, "deleted device's token", err, 401, "M_UNKNOWN_TOKEN")
			}
			devs, err := alice.GetDevicesInfo(ctx)
			if err != nil || len(devs.Devices) != 1 || devs.Devices[0].DeviceID != alice.DeviceID {
				t.Errorf("devices left = %+v, %v; want only %s", devs, err, alice.DeviceID)
			}
			// Bob's devices are untouched.
			if _, err := bob.Whoami(ctx); err != nil {
				t.Errorf("bob: %v", err)
			}
		})
	})
}

func TestChangePassword(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		ctx := context.Background()
		alice := s.Register("alice", "old-pw")
		other := s.Login("@alice:localhost", "old-pw")

		st, body := acctReq(t, s, "POST", "/v3/account/password", alice.AccessToken, map[string]any{})
		acctWantErr(t, "no new password", st, body, 400, "M_MISSING_PARAM")
		st, body = acctReq(t, s, "POST", "/v3/account/password", "", map[string]any{"new_password": "new-pw"})
		acctWantErr(t, "no access token", st, body, 401, "M_MISSING_TOKEN")

		st, body = acctReq(t, s, "POST", "/v3/account/password", alice.AccessToken, map[string]any{"new_password": "new-pw"})
		sess := acctWantUIA(t, "no auth", st, body, passwordFlow, "")
		st, body = acctReq(t, s, "POST", "/v3/account/password", alice.AccessToken, map[string]any{
			"new_password": "new-pw", "auth": passwordAuth(sess, "@alice:localhost", "wrong"),
		})
		acctWantUIA(t, "wrong password", st, body, passwordFlow, "M_FORBIDDEN")
		st, body = acctReq(t, s, "POST", "/v3/account/password", alice.AccessToken, map[string]any{
			"new_password": "new-pw", "auth": passwordAuth(sess, "@alice:localhost", "old-pw"),
		})
		if st != 200 {
			t.Fatalf("change password: %d %v", st, body)
		}

		st, body = acctReq(t, s, "POST", "/v3/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "old-pw"})
		acctWantErr(t, "login with the old password", st, body, 403, "M_FORBIDDEN")
		s.Login("@alice:localhost", "new-pw")
		// The calling device survives, the others are logged out.
		if _, err := alice.Whoami(ctx); err != nil {
			t.Errorf("calling device logged out: %v", err)
		}
		_, err := other.Whoami(ctx)
		wantMatrixErr(t, "other device", err, 401, "M_UNKNOWN_TOKEN")

		// logout_devices: false keeps them.
		kept := s.Login("@alice:localhost", "new-pw")
		st, body = acctReq(t, s, "POST", "/v3/account/password", alice.AccessToken, map[string]any{
			"new_password": "newer-pw", "logout_devices": false, "auth": passwordAuth("", "alice", "new-pw"),
		})
		if st != 200 {
			t.Fatalf("change password without logout: %d %v", st, body)
		}
		if _, err := kept.Whoami(ctx); err != nil {
			t.Errorf("logout_devices=false logged out a device: %v", err)
		}
		s.Login("@alice:localhost", "newer-pw")
	})
}

func TestDeactivateAccount(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		ctx := context.Background()
		alice := s.Register("alice", "pw")
		other := s.Login("@alice:localhost", "pw")

		st, body := acctReq(t, s, "POST", "/v3/account/deactivate", alice.AccessToken, map[string]any{})
		sess := acctWantUIA(t, "no auth", st, body, passwordFlow, "")
		st, body = acctReq(t, s, "POST", "/v3/account/deactivate", alice.AccessToken, map[string]any{"auth": passwordAuth(sess, "@alice:localhost", "wrong")})
		acctWantUIA(t, "wrong password", st, body, passwordFlow, "M_FORBIDDEN")
		if _, err := alice.Whoami(ctx); err != nil {
			t.Fatalf("deactivated without auth: %v", err)
		}
		st, body = acctReq(t, s, "POST", "/v3/account/deactivate", alice.AccessToken, map[string]any{"auth": passwordAuth(sess, "@alice:localhost", "pw")})
		if st != http.StatusOK || body["id_server_unbind_result"] != "success" {
			t.Fatalf("deactivate: %d %v", st, body)
		}

		for _, c := range []*mautrix.Client{alice, other} {
			_, err := c.Whoami(ctx)
			wantMatrixErr(t, "token after deactivation", err, 401, "M_UNKNOWN_TOKEN")
		}
		st, body = acctReq(t, s, "POST", "/v3/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "pw"})
		acctWantErr(t, "login after deactivation", st, body, 403, "M_FORBIDDEN")
		st, body = acctReq(t, s, "GET", "/v3/register/available?username=alice", "", nil)
		acctWantErr(t, "user ID after deactivation", st, body, 400, "M_USER_IN_USE")
	})
}
