// Package mxtest starts real Myelin homeservers on loopback, on SQLite or
// PostgreSQL, and attaches mautrix clients to them. Tests drive servers only
// through HTTP, as a real client would.
package mxtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/homeserver"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// Server is a homeserver started for a test.
type Server struct {
	*homeserver.Server
	Config config.Config
	URL    string
	Engine string
	t      testing.TB
}

// Option adjusts a test server's config before it starts.
type Option func(*config.Config)

// Engines runs fn as a parallel subtest per database engine.
func Engines(t *testing.T, fn func(t *testing.T, engine string)) {
	for _, e := range storagetest.Engines {
		t.Run(e, func(t *testing.T) {
			t.Parallel()
			fn(t, e)
		})
	}
}

// Start starts a server on the engine ("sqlite" or "postgres") with open
// registration, a cheap bcrypt cost and no rate limits, and stops it when
// the test ends.
func Start(t testing.TB, engine string, opts ...Option) *Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.ServerName = "localhost"
	cfg.DataDir = t.TempDir()
	cfg.SigningKeyPath = cfg.DataDir + "/signing.key"
	cfg.DatabaseURL = storagetest.DSN(t, engine)
	cfg.Listen = "127.0.0.1:0"
	cfg.EnableRegistration = true
	cfg.RegistrationSharedSecret = "test-shared-secret"
	cfg.BcryptCost = 4
	cfg.RateLimit.Enabled = false
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{Config: cfg, Engine: engine, t: t}
	s.start()
	t.Cleanup(func() { s.stop() })
	return s
}

func logger() *slog.Logger {
	if os.Getenv("MYELIN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (s *Server) start() {
	s.t.Helper()
	hs, err := homeserver.New(context.Background(), s.Config, logger())
	if err != nil {
		s.t.Fatalf("starting homeserver: %v", err)
	}
	if err := hs.Start(); err != nil {
		s.t.Fatalf("starting homeserver: %v", err)
	}
	s.Server = hs
	s.URL = "http://" + hs.Addr()
	// Keep the port across restarts so existing clients keep working.
	s.Config.Listen = hs.Addr()
}

func (s *Server) stop() {
	if s.Server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Server.Shutdown(ctx); err != nil {
		s.t.Errorf("stopping homeserver: %v", err)
	}
	s.Server = nil
}

// Restart stops the server and starts it again on the same database and
// data directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

var userSeq atomic.Int64

// Client registers a fresh user (localpart prefix plus a unique suffix) and
// returns a logged-in client.
func (s *Server) Client(prefix string) *mautrix.Client {
	s.t.Helper()
	localpart := fmt.Sprintf("%s%d", prefix, userSeq.Add(1))
	return s.Register(localpart, "password-"+localpart)
}

// Register creates localpart with password through m.login.dummy
// registration and returns a logged-in client.
func (s *Server) Register(localpart, password string) *mautrix.Client {
	s.t.Helper()
	cli := s.Anonymous()
	resp, err := cli.RegisterDummy(context.Background(), &mautrix.ReqRegister[any]{
		Username: localpart, Password: password,
	})
	if err != nil {
		s.t.Fatalf("registering %s: %v", localpart, err)
	}
	cli.UserID, cli.AccessToken, cli.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return cli
}

// Anonymous returns a client with no credentials.
func (s *Server) Anonymous() *mautrix.Client {
	s.t.Helper()
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		s.t.Fatalf("creating client: %v", err)
	}
	return cli
}

// Login returns a new client logged in as user with password.
func (s *Server) Login(user id.UserID, password string) *mautrix.Client {
	s.t.Helper()
	cli := s.Anonymous()
	_, err := cli.Login(context.Background(), &mautrix.ReqLogin{
		Type:             mautrix.AuthTypePassword,
		Identifier:       mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user.String()},
		Password:         password,
		StoreCredentials: true,
	})
	if err != nil {
		s.t.Fatalf("logging in %s: %v", user, err)
	}
	return cli
}
