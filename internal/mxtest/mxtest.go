// Package mxtest starts real Myelin homeservers on loopback, on SQLite or
// PostgreSQL, and attaches mautrix clients to them. Tests drive servers only
// through HTTP, as a real client would.
package mxtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/homeserver"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
	"github.com/myelin-chat/myelin/internal/tlscert"
)

// Server is a homeserver started for a test.
type Server struct {
	*homeserver.Server
	Config config.Config
	URL    string
	Engine string
	// TestCA issued the federation certificate of servers started by
	// Federation; nil otherwise.
	TestCA *TestCA
	t      testing.TB
}

// TestCA is the CA of a federation test, which every server trusts.
type TestCA struct {
	CA       *tlscert.CA
	CertFile string
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
	s, err := tryStart(t, engine, opts...)
	if err != nil {
		t.Fatalf("starting homeserver: %v", err)
	}
	return s
}

// tryStart is Start returning its error, for callers that can try again
// with other settings.
func tryStart(t testing.TB, engine string, opts ...Option) (*Server, error) {
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
	if err := s.startErr(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { s.stop() })
	return s, nil
}

func logger() *slog.Logger {
	if os.Getenv("MYELIN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (s *Server) start() {
	s.t.Helper()
	if err := s.startErr(); err != nil {
		s.t.Fatalf("starting homeserver: %v", err)
	}
}

func (s *Server) startErr() error {
	hs, err := homeserver.New(context.Background(), s.Config, logger())
	if err != nil {
		return err
	}
	if err := hs.Start(); err != nil {
		// Close the database the half-started server holds.
		_ = hs.Shutdown(context.Background())
		return err
	}
	s.Server = hs
	s.URL = "http://" + hs.Addr()
	// Keep the port across restarts so existing clients keep working.
	s.Config.Listen = hs.Addr()
	return nil
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

// Federation starts n servers on engine that federate with each other
// over loopback TLS, the way the deployments do: each is named
// 127.0.0.1:PORT after its federation TLS listener, holds a certificate
// for 127.0.0.1 issued at start by a test CA, and trusts that CA.
func Federation(t testing.TB, engine string, n int, opts ...Option) []*Server {
	t.Helper()
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatalf("creating test CA: %v", err)
	}
	caCert, caKey, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatalf("writing test CA: %v", err)
	}
	testCA := &TestCA{CA: ca, CertFile: caCert}
	servers := make([]*Server, n)
	for i := range servers {
		// Another test process may bind the chosen port between
		// freePort's check and the server's listen: try another.
		for attempt := 1; ; attempt++ {
			name := "127.0.0.1:" + FreePort(t)
			fed := func(c *config.Config) {
				c.ServerName = name
				c.Federation.Listen = name
				c.Federation.TLSCACert, c.Federation.TLSCAKey = caCert, caKey
				c.Federation.ExtraCAFiles = []string{caCert}
				c.Federation.AllowPrivate = true
			}
			s, err := tryStart(t, engine, append([]Option{fed}, opts...)...)
			if err == nil {
				servers[i] = s
				break
			}
			if !errors.Is(err, syscall.EADDRINUSE) || attempt == 5 {
				t.Fatalf("starting homeserver: %v", err)
			}
		}
		servers[i].TestCA = testCA
	}
	return servers
}

// FreePort returns a loopback port that is free now, chosen below the
// kernel's ephemeral range (32768 and up on Linux) so that the many
// outbound connections of parallel tests cannot take it before the server
// binds it. Two tests can still pick the same port at the same moment;
// callers that can, retry on EADDRINUSE.
func FreePort(t testing.TB) string {
	t.Helper()
	for range 100 {
		port := strconv.Itoa(20000 + rand.IntN(12000))
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			continue
		}
		_ = ln.Close()
		return port
	}
	t.Fatalf("no free loopback port found")
	return ""
}

// Down stops the server, keeping its database, data directory and ports,
// as for an outage. Up brings it back.
func (s *Server) Down() { s.stop() }

// Up starts a server stopped by Down.
func (s *Server) Up() {
	s.t.Helper()
	s.start()
}
