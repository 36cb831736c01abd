package users_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
	"github.com/myelin-chat/myelin/internal/users"
)

func newService(db *storage.DB) *users.Service {
	return users.New(db, "example.org", 4, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func wantCode(t *testing.T, err error, code *mxerr.Error) {
	t.Helper()
	if !errors.Is(err, code) {
		t.Fatalf("err = %v, want %s", err, code.Code)
	}
}

func TestAccounts(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(db)

		alice, err := s.Create(ctx, "alice", "secret", false)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if alice != "@alice:example.org" {
			t.Errorf("user ID = %s, want @alice:example.org", alice)
		}
		_, err = s.Create(ctx, "alice", "other", false)
		wantCode(t, err, mxerr.UserInUse)
		for _, bad := range []string{"", "Alice", "al ice", "al:ice", "é"} {
			_, err = s.Create(ctx, bad, "x", false)
			wantCode(t, err, mxerr.InvalidUsername)
		}

		if free, err := s.Available(ctx, "alice"); err != nil || free {
			t.Errorf("Available(alice) = %v, %v; want false", free, err)
		}
		if free, err := s.Available(ctx, "bob"); err != nil || !free {
			t.Errorf("Available(bob) = %v, %v; want true", free, err)
		}

		if err := s.CheckPassword(ctx, alice, "secret"); err != nil {
			t.Errorf("CheckPassword(right): %v", err)
		}
		wantCode(t, s.CheckPassword(ctx, alice, "wrong"), mxerr.Forbidden)
		wantCode(t, s.CheckPassword(ctx, "@nobody:example.org", "secret"), mxerr.Forbidden)

		if err := s.SetPassword(ctx, alice, "new"); err != nil {
			t.Fatalf("SetPassword: %v", err)
		}
		wantCode(t, s.CheckPassword(ctx, alice, "secret"), mxerr.Forbidden)
		if err := s.CheckPassword(ctx, alice, "new"); err != nil {
			t.Errorf("CheckPassword(new): %v", err)
		}

		admin, err := s.Create(ctx, "root", "pw", true)
		if err != nil {
			t.Fatalf("Create(admin): %v", err)
		}
		acct, err := s.Get(ctx, admin)
		if err != nil || !acct.IsAdmin || acct.Deactivated {
			t.Errorf("Get(admin) = %+v, %v; want admin, active", acct, err)
		}
		_, err = s.Get(ctx, "@nobody:example.org")
		wantCode(t, err, mxerr.NotFound)
	})
}

func TestLongPasswordsCountInFull(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(db)
		long := string(make([]byte, 100))
		u, err := s.Create(ctx, "long", long+"a", false)
		if err != nil {
			t.Fatal(err)
		}
		// bcrypt alone would ignore everything after byte 72.
		wantCode(t, s.CheckPassword(ctx, u, long+"b"), mxerr.Forbidden)
		if err := s.CheckPassword(ctx, u, long+"a"); err != nil {
			t.Errorf("CheckPassword: %v", err)
		}
	})
}

func TestSessionsAndDevices(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(db)
		alice, err := s.Create(ctx, "alice", "pw", false)
		if err != nil {
			t.Fatal(err)
		}
		name := "Phone"
		tok1, dev1, err := s.Login(ctx, alice, "", &name)
		if err != nil {
			t.Fatalf("Login: %v", err)
		}
		tok2, dev2, err := s.Login(ctx, alice, "LAPTOP", nil)
		if err != nil || dev2 != "LAPTOP" {
			t.Fatalf("Login(LAPTOP) = %s, %v", dev2, err)
		}
		sess, err := s.Authenticate(ctx, tok1)
		if err != nil || sess.UserID != alice || sess.DeviceID != dev1 {
			t.Fatalf("Authenticate = %+v, %v", sess, err)
		}
		_, err = s.Authenticate(ctx, "nope")
		wantCode(t, err, mxerr.UnknownToken)
		_, err = s.Authenticate(ctx, "")
		wantCode(t, err, mxerr.MissingToken)

		devs, err := s.Devices(ctx, alice)
		if err != nil || len(devs) != 2 {
			t.Fatalf("Devices = %+v, %v; want 2", devs, err)
		}
		d, err := s.Device(ctx, alice, dev1)
		if err != nil || d.DisplayName == nil || *d.DisplayName != "Phone" {
			t.Errorf("Device(%s) = %+v, %v; want name Phone", dev1, d, err)
		}
		_, err = s.Device(ctx, alice, "MISSING")
		wantCode(t, err, mxerr.NotFound)

		if err := s.RenameDevice(ctx, alice, dev2, "Laptop"); err != nil {
			t.Fatalf("RenameDevice: %v", err)
		}
		wantCode(t, s.RenameDevice(ctx, alice, "MISSING", "x"), mxerr.NotFound)

		// Logging in again on a known device replaces its token.
		tok2b, _, err := s.Login(ctx, alice, "LAPTOP", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Authenticate(ctx, tok2)
		wantCode(t, err, mxerr.UnknownToken)
		if _, err := s.Authenticate(ctx, tok2b); err != nil {
			t.Errorf("new LAPTOP token: %v", err)
		}
		if d, _ := s.Device(ctx, alice, "LAPTOP"); d.DisplayName == nil || *d.DisplayName != "Laptop" {
			t.Errorf("re-login changed the device name: %+v", d)
		}

		if err := s.Logout(ctx, alice, dev1); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		_, err = s.Authenticate(ctx, tok1)
		wantCode(t, err, mxerr.UnknownToken)
		if devs, _ := s.Devices(ctx, alice); len(devs) != 1 {
			t.Errorf("after Logout: %d devices, want 1", len(devs))
		}

		if err := s.LogoutAll(ctx, alice); err != nil {
			t.Fatalf("LogoutAll: %v", err)
		}
		_, err = s.Authenticate(ctx, tok2b)
		wantCode(t, err, mxerr.UnknownToken)
		if devs, _ := s.Devices(ctx, alice); len(devs) != 0 {
			t.Errorf("after LogoutAll: %d devices, want 0", len(devs))
		}
	})
}

func TestDeactivate(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(db)
		alice, _ := s.Create(ctx, "alice", "pw", false)
		tok, _, err := s.Login(ctx, alice, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Deactivate(ctx, alice); err != nil {
			t.Fatalf("Deactivate: %v", err)
		}
		_, err = s.Authenticate(ctx, tok)
		wantCode(t, err, mxerr.UnknownToken)
		wantCode(t, s.CheckPassword(ctx, alice, "pw"), mxerr.Forbidden)
		if a, err := s.Get(ctx, alice); err != nil || !a.Deactivated {
			t.Errorf("Get = %+v, %v; want deactivated", a, err)
		}
		// The user ID stays taken.
		_, err = s.Create(ctx, "alice", "pw", false)
		wantCode(t, err, mxerr.UserInUse)
	})
}

func TestRegistrationTokens(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(db)
		valid := func(tok string) bool {
			t.Helper()
			ok, err := s.RegistrationTokenValid(ctx, tok)
			if err != nil {
				t.Fatalf("RegistrationTokenValid(%s): %v", tok, err)
			}
			return ok
		}
		one := int64(1)

		gen, err := s.CreateRegistrationToken(ctx, "", nil, time.Time{})
		if err != nil || gen == "" {
			t.Fatalf("CreateRegistrationToken(generated) = %q, %v", gen, err)
		}
		if !valid(gen) {
			t.Error("generated token is not valid")
		}
		if _, err := s.CreateRegistrationToken(ctx, gen, nil, time.Time{}); !errors.Is(err, mxerr.InvalidParam) {
			t.Errorf("duplicate token: err = %v, want M_INVALID_PARAM", err)
		}
		if _, err := s.CreateRegistrationToken(ctx, "has space", nil, time.Time{}); !errors.Is(err, mxerr.InvalidParam) {
			t.Errorf("bad token grammar: err = %v, want M_INVALID_PARAM", err)
		}

		if _, err := s.CreateRegistrationToken(ctx, "once", &one, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateRegistrationToken(ctx, "expired", nil, time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateRegistrationToken(ctx, "later", nil, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for tok, want := range map[string]bool{"once": true, "expired": false, "later": true, "unknown": false, "": false} {
			if got := valid(tok); got != want {
				t.Errorf("valid(%q) = %v, want %v", tok, got, want)
			}
		}

		// A taken user ID does not spend the use.
		if _, err := s.Create(ctx, "taken", "pw", false); err != nil {
			t.Fatal(err)
		}
		_, err = s.CreateWithRegistrationToken(ctx, "taken", "pw", "once")
		wantCode(t, err, mxerr.UserInUse)
		if info, _ := s.RegistrationTokenInfo(ctx, "once"); info.Completed != 0 {
			t.Errorf("failed registration spent a use: completed = %d", info.Completed)
		}

		u, err := s.CreateWithRegistrationToken(ctx, "first", "pw", "once")
		if err != nil || u != "@first:example.org" {
			t.Fatalf("CreateWithRegistrationToken = %s, %v", u, err)
		}
		if err := s.CheckPassword(ctx, u, "pw"); err != nil {
			t.Errorf("password of token-registered account: %v", err)
		}
		info, err := s.RegistrationTokenInfo(ctx, "once")
		if err != nil || info.Completed != 1 || info.UsesAllowed == nil || *info.UsesAllowed != 1 {
			t.Errorf("RegistrationTokenInfo(once) = %+v, %v", info, err)
		}
		if valid("once") {
			t.Error("used-up token still valid")
		}
		_, err = s.CreateWithRegistrationToken(ctx, "second", "pw", "once")
		if !errors.Is(err, users.ErrRegistrationTokenInvalid) {
			t.Errorf("used-up token: err = %v, want invalid token", err)
		}
		_, err = s.CreateWithRegistrationToken(ctx, "third", "pw", "expired")
		if !errors.Is(err, users.ErrRegistrationTokenInvalid) {
			t.Errorf("expired token: err = %v, want invalid token", err)
		}
		for _, lp := range []string{"second", "third"} {
			if free, _ := s.Available(ctx, lp); !free {
				t.Errorf("%s was created with an invalid token", lp)
			}
		}
		_, err = s.RegistrationTokenInfo(ctx, "unknown")
		wantCode(t, err, mxerr.NotFound)
	})
}

func TestRegistrationTokenConcurrentUse(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(db)
		three := int64(3)
		if _, err := s.CreateRegistrationToken(ctx, "three", &three, time.Time{}); err != nil {
			t.Fatal(err)
		}
		const n = 8
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := s.CreateWithRegistrationToken(ctx, "user"+string(rune('a'+i)), "pw", "three")
				errs <- err
			}()
		}
		created := 0
		for range n {
			if err := <-errs; err == nil {
				created++
			} else if !errors.Is(err, users.ErrRegistrationTokenInvalid) {
				t.Errorf("unexpected error: %v", err)
			}
		}
		if created != 3 {
			t.Errorf("%d accounts created with a 3-use token, want 3", created)
		}
	})
}

// TestRevokedTokensLeaveTheCache authenticates a token (so its session is
// cached), revokes it in each way there is, and checks that it no longer
// authenticates while the user's other sessions are unaffected where they
// should be.
func TestRevokedTokensLeaveTheCache(t *testing.T) {
	tests := []struct {
		name          string
		revoke        func(ctx context.Context, s *users.Service, alice id.UserID, dev id.DeviceID) error
		otherSurvives bool
	}{
		{"logout", func(ctx context.Context, s *users.Service, alice id.UserID, dev id.DeviceID) error {
			return s.Logout(ctx, alice, dev)
		}, true},
		{"delete devices", func(ctx context.Context, s *users.Service, alice id.UserID, dev id.DeviceID) error {
			return s.DeleteDevices(ctx, alice, []id.DeviceID{dev})
		}, true},
		{"logout all", func(ctx context.Context, s *users.Service, alice id.UserID, _ id.DeviceID) error {
			return s.LogoutAll(ctx, alice)
		}, false},
		{"deactivate", func(ctx context.Context, s *users.Service, alice id.UserID, _ id.DeviceID) error {
			return s.Deactivate(ctx, alice)
		}, false},
		{"login on the same device", func(ctx context.Context, s *users.Service, alice id.UserID, dev id.DeviceID) error {
			_, _, err := s.Login(ctx, alice, dev, nil)
			return err
		}, true},
	}
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(db)
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				alice, err := s.Create(ctx, fmt.Sprintf("alice%d", i), "pw", false)
				if err != nil {
					t.Fatal(err)
				}
				tok, dev, err := s.Login(ctx, alice, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				other, _, err := s.Login(ctx, alice, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, tk := range []string{tok, other, tok} {
					if _, err := s.Authenticate(ctx, tk); err != nil {
						t.Fatalf("before revoking: %v", err)
					}
				}
				if err := tt.revoke(ctx, s, alice, dev); err != nil {
					t.Fatal(err)
				}
				_, err = s.Authenticate(ctx, tok)
				wantCode(t, err, mxerr.UnknownToken)
				_, err = s.Authenticate(ctx, other)
				if tt.otherSurvives && err != nil {
					t.Errorf("other device's token: %v, want still valid", err)
				} else if !tt.otherSurvives {
					wantCode(t, err, mxerr.UnknownToken)
				}
			})
		}
	})
}

// TestAuthenticateIsCached checks that a known session is answered from
// memory: with its row deleted behind the service's back, the token still
// authenticates (until the cache's TTL), and an unknown token is never
// cached.
func TestAuthenticateIsCached(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(db)
		alice, _ := s.Create(ctx, "alice", "pw", false)
		tok, _, err := s.Login(ctx, alice, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `DELETE FROM access_tokens`); err != nil {
			t.Fatal(err)
		}
		if sess, err := s.Authenticate(ctx, tok); err != nil || sess.UserID != alice {
			t.Errorf("cached Authenticate = %+v, %v; want alice's session", sess, err)
		}
		_, err = s.Authenticate(ctx, "myl_unknown")
		wantCode(t, err, mxerr.UnknownToken)
	})
}

// TestDevicesHook: every way devices go (delete, logout, logout from all,
// deactivation) tells the devices hook, in the deleting transaction, and
// a failing hook keeps the devices.
func TestDevicesHook(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		var got []string
		fail := false
		s := users.New(db, "example.org", 4, slog.New(slog.NewTextHandler(io.Discard, nil)),
			users.WithDevicesHook(func(ctx context.Context, tx *storage.Tx, user id.UserID, devices []id.DeviceID) error {
				if fail {
					return errors.New("hook refuses")
				}
				got = append(got, fmt.Sprintf("%s %v", user.Localpart(), devices))
				return nil
			}))
		alice, err := s.Create(ctx, "alice", "pw", false)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []id.DeviceID{"A", "B", "C", "D"} {
			if _, _, err := s.Login(ctx, alice, d, nil); err != nil {
				t.Fatal(err)
			}
		}
		fail = true
		if err := s.DeleteDevices(ctx, alice, []id.DeviceID{"A"}); err == nil {
			t.Fatal("DeleteDevices succeeded although the hook failed")
		}
		if _, err := s.Device(ctx, alice, "A"); err != nil {
			t.Errorf("device A gone although the hook failed: %v", err)
		}
		fail = false
		if err := s.DeleteDevices(ctx, alice, []id.DeviceID{"A", "B"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Logout(ctx, alice, "C"); err != nil {
			t.Fatal(err)
		}
		if err := s.LogoutAll(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Login(ctx, alice, "E", nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Deactivate(ctx, alice); err != nil {
			t.Fatal(err)
		}
		want := []string{"alice [A B]", "alice [C]", "alice [D]", "alice [E]"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("hook calls = %q, want %q", got, want)
		}
	})
}
