// Package storagetest runs a test against both database engines: a fresh
// SQLite file and a fresh PostgreSQL database, each migrated.
//
// PostgreSQL comes from MYELIN_TEST_POSTGRES (a URL to a server where the
// test user may create databases). When that variable is unset and the
// default local server does not answer, the PostgreSQL half is skipped;
// when it is set and the server does not answer, the test fails.
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/myelin-chat/myelin/internal/storage"
)

// DefaultPostgres is used when MYELIN_TEST_POSTGRES is unset.
const DefaultPostgres = "postgres://root@127.0.0.1:5432/postgres?sslmode=disable"

// Engines lists the engine names Run uses as subtest names.
var Engines = []string{"sqlite", "postgres"}

// Run runs fn once per engine as parallel subtests, each with its own
// freshly migrated database.
func Run(t *testing.T, fn func(t *testing.T, db *storage.DB)) {
	t.Helper()
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			dsn := DSN(t, engine)
			db, err := storage.Open(context.Background(), dsn, t.TempDir(), 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatalf("opening %s: %v", engine, err)
			}
			t.Cleanup(func() { db.Close() })
			if err := db.Migrate(context.Background()); err != nil {
				t.Fatalf("migrating %s: %v", engine, err)
			}
			fn(t, db)
		})
	}
}

// DSN returns a database URL for a fresh, empty database of the engine
// ("sqlite" or "postgres"), dropped when the test ends. For SQLite the empty
// string is returned: the caller's data directory holds the file.
func DSN(t testing.TB, engine string) string {
	t.Helper()
	if engine != "postgres" {
		return "sqlite:" + t.TempDir() + "/myelin.db"
	}
	base, explicit := os.LookupEnv("MYELIN_TEST_POSTGRES")
	if !explicit {
		base = DefaultPostgres
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("opening postgres admin connection: %v", err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		if explicit {
			t.Fatalf("postgres at MYELIN_TEST_POSTGRES unreachable: %v", err)
		}
		t.Skipf("postgres not reachable (%v); set MYELIN_TEST_POSTGRES to run this half", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "myelin_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer a.Close()
		_, _ = a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parsing MYELIN_TEST_POSTGRES: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}
