package userdir

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// TestSearchScales: a search in a directory of many users in one public
// room reads only the matching index range, so it stays fast; the rest
// of the behaviour is tested through HTTP in homeserver.
func TestSearchScales(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		const users = 20000
		s := New(db, "hs", false, slog.New(slog.NewTextHandler(io.Discard, nil)))
		err := db.WriteTx(ctx, func(tx *storage.Tx) error {
			if err := setPublic(ctx, tx, "!pub:hs", true); err != nil {
				return err
			}
			for i := range users {
				u := id.UserID(fmt.Sprintf("@user%d:hs", i))
				if err := setProfile(ctx, tx, u, true, fmt.Sprintf("Person Number%d", i), ""); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO user_directory_members (user_id, room_id) VALUES ($1, '!pub:hs')`, u.String()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if db.Dialect() == storage.Postgres {
			// As autovacuum would have by now: without statistics the
			// planner takes 20000 fresh rows for a small table and scans.
			if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		const runs = 20
		for range runs {
			got, limited, err := s.Search(ctx, "@user0:hs", "number1234", 10)
			if err != nil {
				t.Fatal(err)
			}
			// number1234 and number12340..12349.
			if len(got) != 10 || !limited {
				t.Fatalf("got %d results (limited %v), want 10, limited", len(got), limited)
			}
		}
		took := time.Since(start) / runs
		t.Logf("search among %d users: %v", users, took)
		if took > 200*time.Millisecond {
			t.Errorf("a search took %v: is it scanning the directory?", took)
		}
	})
}
