package federationapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/federationapi"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
	"github.com/myelin-chat/myelin/internal/tlscert"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// server is one in-process homeserver's federation side: a TLS listener
// with the key endpoints and an authenticated echo endpoint, its ring and
// its client.
type server struct {
	name   string
	key    keys.SigningKey
	db     *storage.DB
	ring   *keys.Ring
	client *fedclient.Client
	http   *httptest.Server
}

func newKey(t testing.TB, version string) keys.SigningKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys.SigningKey{ID: id.KeyID("ed25519:" + version), Priv: priv}
}

// openDB opens a second fresh database on the engine of db.
func openDB(t *testing.T, db *storage.DB) *storage.DB {
	t.Helper()
	dsn := storagetest.DSN(t, db.Dialect().String())
	other, err := storage.Open(context.Background(), dsn, t.TempDir(), 0, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	if err := other.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return other
}

// listen reserves a TLS test server for name; start wires it up later,
// once every address is known for the test host maps.
func listen(t *testing.T, ca *tlscert.CA, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	cert, err := ca.Issue(name)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	return srv
}

func start(t *testing.T, s *server, fed config.Federation) {
	t.Helper()
	var err error
	if s.client, err = fedclient.New(fed, s.name, s.key, discard); err != nil {
		t.Fatal(err)
	}
	s.ring, err = keys.NewRing(context.Background(), keys.RingConfig{
		DB: s.db, ServerName: s.name, Key: s.key, Fetcher: s.client, Notaries: fed.TrustedKeyServers, Log: discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a := &httpx.Adapter{Log: discard}
	(&federationapi.KeyServer{Ring: s.ring, Version: "test"}).Register(mux, a)
	auth := &federationapi.Authenticator{ServerName: s.name, Keys: s.ring.VerifyKey}
	mux.Handle("PUT /_matrix/federation/v1/echo", a.Wrap(auth.Require(func(w http.ResponseWriter, r *http.Request) error {
		var body map[string]any
		if err := httpx.DecodeJSON(r, &body); err != nil {
			return err
		}
		return httpx.OK(w, map[string]any{"origin": federationapi.Origin(r.Context()), "body": body})
	})))
	s.http.Config.Handler = httpx.Fallback(mux)
	s.http.StartTLS()
}

// federation starts named servers, each on its own database of db's
// engine, trusting one CA. unreachable[a] lists servers a cannot reach.
func federation(t *testing.T, db *storage.DB, names []string, unreachable map[string][]string, notaries map[string][]string) map[string]*server {
	t.Helper()
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile, _, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]*server{}
	for i, name := range names {
		s := &server{name: name, key: newKey(t, "k"+name[:3]), http: listen(t, ca, name)}
		s.db = db
		if i > 0 {
			s.db = openDB(t, db)
		}
		servers[name] = s
	}
	// A closed port for unreachable servers.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	for _, name := range names {
		hosts := map[string]string{}
		for _, other := range names {
			hosts[other] = servers[other].http.Listener.Addr().String()
		}
		for _, other := range unreachable[name] {
			hosts[other] = closedAddr
		}
		var trusted []config.TrustedKeyServer
		for _, n := range notaries[name] {
			trusted = append(trusted, config.TrustedKeyServer{ServerName: n})
		}
		start(t, servers[name], config.Federation{
			ExtraCAFiles: []string{caFile}, AllowPrivate: true, TestHosts: hosts, TrustedKeyServers: trusted,
		})
	}
	return servers
}

func TestKeysOverHTTPS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		fed := federation(t, db, []string{"hs1.test", "hs2.test"}, nil, nil)
		hs1, hs2 := fed["hs1.test"], fed["hs2.test"]

		got, until, err := hs1.ring.VerifyKey(ctx, "hs2.test", hs2.key.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got != hs2.key.Public() || until.Before(time.Now().Add(time.Hour)) {
			t.Fatalf("hs1 sees hs2's key %s valid until %v", got, until)
		}

		// The keys were persisted: a ring on hs1's database with no
		// network still has them.
		offline, err := keys.NewRing(ctx, keys.RingConfig{DB: hs1.db, ServerName: "hs1.test", Key: hs1.key, Log: discard})
		if err != nil {
			t.Fatal(err)
		}
		if got, _, err := offline.VerifyKey(ctx, "hs2.test", hs2.key.ID, time.Now()); err != nil || got != hs2.key.Public() {
			t.Fatalf("reloaded key %q, err %v", got, err)
		}

		// An authenticated request from hs1 to hs2: hs2 fetches hs1's key
		// through its ring and sees hs1 as the origin.
		var echo struct {
			Origin string         `json:"origin"`
			Body   map[string]any `json:"body"`
		}
		if err := hs1.client.Do(ctx, "hs2.test", http.MethodPut, "/_matrix/federation/v1/echo", nil, map[string]any{"x": 1}, &echo); err != nil {
			t.Fatal(err)
		}
		if echo.Origin != "hs1.test" || echo.Body["x"] != float64(1) {
			t.Fatalf("echo = %+v", echo)
		}

		// Version and well-known (not configured: 404 M_NOT_FOUND).
		var version struct {
			Server struct{ Name, Version string } `json:"server"`
		}
		if err := hs1.client.Do(ctx, "hs2.test", http.MethodGet, "/_matrix/federation/v1/version", nil, nil, &version); err != nil || version.Server.Name != "Myelin" {
			t.Fatalf("version %+v, err %v", version, err)
		}
		var fe *fedclient.Error
		err = hs1.client.Do(ctx, "hs2.test", http.MethodGet, "/.well-known/matrix/server", nil, nil, nil)
		if !errors.As(err, &fe) || fe.Status != 404 || fe.Code != "M_NOT_FOUND" {
			t.Fatalf("well-known without delegation: %v", err)
		}
	})
}

func TestNotaryQuery(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		// hs1 cannot reach hs3 and trusts hs2 as a notary; hs2 can reach
		// hs3.
		fed := federation(t, db, []string{"hs1.test", "hs2.test", "hs3.test"},
			map[string][]string{"hs1.test": {"hs3.test"}},
			map[string][]string{"hs1.test": {"hs2.test"}})
		hs1, hs2, hs3 := fed["hs1.test"], fed["hs2.test"], fed["hs3.test"]

		got, _, err := hs1.ring.VerifyKey(ctx, "hs3.test", hs3.key.ID, time.Now())
		if err != nil || got != hs3.key.Public() {
			t.Fatalf("hs1 through notary hs2: key %q, err %v", got, err)
		}

		// The notary endpoints answer with responses signed by the
		// server and countersigned by the notary.
		for _, tc := range []struct {
			name   string
			method string
			path   string
			query  url.Values
			body   any
		}{
			{"GET", http.MethodGet, "/_matrix/key/v2/query/hs3.test", url.Values{"minimum_valid_until_ts": {"0"}}, nil},
			{"POST", http.MethodPost, "/_matrix/key/v2/query", nil, map[string]any{"server_keys": map[string]any{
				"hs3.test": map[string]any{string(hs3.key.ID): map[string]any{}},
				"hs2.test": map[string]any{},
			}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var resp keys.QueryResp
				if err := hs3.client.Do(ctx, "hs2.test", tc.method, tc.path, tc.query, tc.body, &resp); err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, raw := range resp.ServerKeys {
					var skr keys.ServerKeysResp
					if err := json.Unmarshal(raw, &skr); err != nil {
						t.Fatal(err)
					}
					seen[skr.ServerName] = true
					owner := fed[skr.ServerName]
					if err := keys.VerifyJSON(skr.ServerName, owner.key.ID, owner.key.Public(), raw); err != nil {
						t.Fatalf("%s's self-signature: %v", skr.ServerName, err)
					}
					if err := keys.VerifyJSON("hs2.test", hs2.key.ID, hs2.key.Public(), raw); err != nil {
						t.Fatalf("notary signature on %s: %v", skr.ServerName, err)
					}
				}
				if !seen["hs3.test"] || (tc.method == http.MethodPost && !seen["hs2.test"]) {
					t.Fatalf("answered for %v", seen)
				}
			})
		}
		var resp keys.QueryResp
		if err := hs3.client.Do(ctx, "hs2.test", http.MethodPost, "/_matrix/key/v2/query", nil, map[string]any{"server_keys": map[string]any{}}, &resp); err != nil || resp.ServerKeys == nil || len(resp.ServerKeys) != 0 {
			t.Fatalf("empty query: %+v, err %v", resp, err)
		}
		var fe *fedclient.Error
		if err := hs3.client.Do(ctx, "hs2.test", http.MethodPost, "/_matrix/key/v2/query", nil, map[string]any{}, nil); !errors.As(err, &fe) || fe.Code != "M_BAD_JSON" {
			t.Fatalf("query without server_keys: %v", err)
		}
	})
}

func TestKeyRotationKeepsOldKeys(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		fed := federation(t, db, []string{"hs1.test", "hs2.test"}, nil, nil)
		hs1, hs2 := fed["hs1.test"], fed["hs2.test"]
		oldKey := hs2.key
		if _, _, err := hs1.ring.VerifyKey(ctx, "hs2.test", oldKey.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		// hs2 restarts with a new key file: its server now serves the new
		// key and the old one under old_verify_keys.
		hs2.key = newKey(t, "rotated")
		rotated, err := keys.NewRing(ctx, keys.RingConfig{DB: hs2.db, ServerName: "hs2.test", Key: hs2.key, Fetcher: hs2.client, Log: discard})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		(&federationapi.KeyServer{Ring: rotated}).Register(mux, &httpx.Adapter{Log: discard})
		hs2.http.Config.Handler = mux

		raw, err := hs1.client.ServerKeys(ctx, "hs2.test")
		if err != nil {
			t.Fatal(err)
		}
		var skr keys.ServerKeysResp
		if err := json.Unmarshal(raw, &skr); err != nil {
			t.Fatal(err)
		}
		if old, ok := skr.OldVerifyKeys[oldKey.ID]; !ok || old.Key != oldKey.Public() || old.ExpiredTS == 0 {
			t.Fatalf("old_verify_keys = %+v, want %s", skr.OldVerifyKeys, oldKey.ID)
		}
		if _, ok := skr.VerifyKeys[hs2.key.ID]; !ok {
			t.Fatalf("verify_keys = %+v, want %s", skr.VerifyKeys, hs2.key.ID)
		}
		// hs1's ring does not refetch for an unknown key ID within a minute
		// of its last fetch (forged origins must not make it flood hs2); a
		// ring past that interval (here: a fresh one on hs1's database)
		// learns the new key, and keeps the old one for old events.
		_, _, err = hs1.ring.VerifyKey(ctx, "hs2.test", hs2.key.ID, time.Now())
		if !errors.Is(err, keys.ErrKeyNotFound) {
			t.Fatalf("new key right after a fetch: err %v, want ErrKeyNotFound", err)
		}
		later, err := keys.NewRing(ctx, keys.RingConfig{DB: hs1.db, ServerName: "hs1.test", Key: hs1.key, Fetcher: hs1.client, Log: discard})
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := later.VerifyKey(ctx, "hs2.test", hs2.key.ID, time.Now())
		if err != nil || got != hs2.key.Public() {
			t.Fatalf("new key: %q, err %v", got, err)
		}
		got, until, err := later.VerifyKey(ctx, "hs2.test", oldKey.ID, time.Now().Add(-time.Hour))
		if err != nil || got != oldKey.Public() || until.UnixMilli() != skr.OldVerifyKeys[oldKey.ID].ExpiredTS {
			t.Fatalf("old key after rotation: %q until %v, err %v", got, until, err)
		}
	})
}
