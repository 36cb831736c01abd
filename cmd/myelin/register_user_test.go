package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

func TestSharedSecretRegisterCommand(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		s := mxtest.Start(t, engine)
		ctx := context.Background()
		secret := s.Config.RegistrationSharedSecret

		userID, err := sharedSecretRegister(ctx, s.URL, secret, newUser{Username: "root", Password: "pw-root", Admin: true})
		if err != nil || userID != "@root:localhost" {
			t.Fatalf("sharedSecretRegister = %s, %v", userID, err)
		}
		acct, err := s.Users.Get(ctx, userID)
		if err != nil || !acct.IsAdmin {
			t.Errorf("account = %+v, %v; want admin", acct, err)
		}
		// No device is left behind; the password works.
		if devs, err := s.Users.Devices(ctx, userID); err != nil || len(devs) != 0 {
			t.Errorf("devices = %+v, %v; want none", devs, err)
		}
		s.Login(userID, "pw-root")

		_, err = sharedSecretRegister(ctx, s.URL, "wrong", newUser{Username: "eve", Password: "pw"})
		if !mautrixIs(err, mautrix.MForbidden) {
			t.Errorf("wrong secret: err = %v, want M_FORBIDDEN", err)
		}
		_, err = sharedSecretRegister(ctx, s.URL, secret, newUser{Username: "root", Password: "pw"})
		if !mautrixIs(err, mautrix.MUserInUse) {
			t.Errorf("taken: err = %v, want M_USER_IN_USE", err)
		}

		// The whole command, with the server found through the config file.
		cfgPath := filepath.Join(t.TempDir(), "homeserver.yaml")
		writeConfig(t, cfgPath, "server_name: localhost\nlisten: "+s.Config.Listen+"\nregistration_shared_secret: "+secret+"\n")
		if err := registerUser([]string{"-u", "fromconfig", "-p", "pw", "--config", cfgPath}); err != nil {
			t.Fatalf("register-user --config: %v", err)
		}
		if acct, err := s.Users.Get(ctx, "@fromconfig:localhost"); err != nil || acct.IsAdmin {
			t.Errorf("fromconfig = %+v, %v; want a non-admin account", acct, err)
		}
		// A URL given before the flags, with the secret on the command line.
		if err := registerUser([]string{s.URL, "-u", "fromurl", "-p", "pw", "-a", "--shared-secret", secret}); err != nil {
			t.Fatalf("register-user URL: %v", err)
		}
		if acct, err := s.Users.Get(ctx, "@fromurl:localhost"); err != nil || !acct.IsAdmin {
			t.Errorf("fromurl = %+v, %v; want an admin account", acct, err)
		}
	})
}

func TestRegisterUserSecretFromEnv(t *testing.T) {
	s := mxtest.Start(t, "sqlite")
	t.Setenv("MYELIN_REGISTRATION_SHARED_SECRET", s.Config.RegistrationSharedSecret)
	if err := registerUser([]string{"-u", "fromenv", "-p", "pw", s.URL}); err != nil {
		t.Fatalf("register-user with the env secret: %v", err)
	}
	if _, err := s.Users.Get(context.Background(), "@fromenv:localhost"); err != nil {
		t.Errorf("fromenv not created: %v", err)
	}
}

func TestRegisterUserArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no username", []string{"-p", "pw", "http://127.0.0.1:1"}, "-u NAME is required"},
		{"two URLs", []string{"-u", "x", "-p", "pw", "http://a", "http://b"}, "at most one server URL"},
		{"unknown flag", []string{"-u", "x", "--bogus"}, "flag provided but not defined"},
		{"missing config", []string{"-u", "x", "-p", "pw", "--config", "/nonexistent/homeserver.yaml"}, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := registerUser(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("registerUser(%q) = %v, want error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestListenURL(t *testing.T) {
	tests := map[string]string{
		"0.0.0.0:8008":   "http://127.0.0.1:8008",
		":8008":          "http://127.0.0.1:8008",
		"[::]:8008":      "http://[::1]:8008",
		"10.0.0.5:8448":  "http://10.0.0.5:8448",
		"localhost:8008": "http://localhost:8008",
	}
	for in, want := range tests {
		if got, err := listenURL(in); err != nil || got != want {
			t.Errorf("listenURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := listenURL("8008"); err == nil {
		t.Error("listenURL(8008) succeeded, want an error")
	}
}

func TestReadLine(t *testing.T) {
	for in, want := range map[string]string{"secret\n": "secret", "secret\r\nmore\n": "secret", "no newline": "no newline"} {
		if got, err := readLine(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("readLine(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := readLine(strings.NewReader("\n")); err == nil {
		t.Error("empty password accepted")
	}
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mautrixIs(err error, want mautrix.RespError) bool {
	var httpErr mautrix.HTTPError
	return errors.As(err, &httpErr) && httpErr.RespError != nil && httpErr.RespError.ErrCode == want.ErrCode
}
