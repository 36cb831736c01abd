package storage_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

func TestCountersAllocateInOrder(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		var got []int64
		for _, n := range []int64{1, 1, 5} {
			err := db.WriteTx(ctx, func(tx *storage.Tx) error {
				v, err := storage.NextID(ctx, tx, "test", n)
				got = append(got, v)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		want := []int64{1, 2, 7}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("allocations = %v, want %v", got, want)
			}
		}
		cur, err := db.CurrentID(ctx, "test")
		if err != nil || cur != 7 {
			t.Fatalf("CurrentID = %d, %v; want 7", cur, err)
		}
	})
}

func TestPlaceholdersAndUniqueViolation(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ins := `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)`
		if _, err := db.ExecContext(ctx, ins, "#a:x", "!r:x", "@u:x", 1); err != nil {
			t.Fatal(err)
		}
		_, err := db.ExecContext(ctx, ins, "#a:x", "!r2:x", "@u:x", 2)
		if !storage.IsUniqueViolation(err) {
			t.Fatalf("duplicate insert: got %v, want a unique violation", err)
		}
		// Placeholders out of order must bind by number, not position.
		var room string
		err = db.QueryRowContext(ctx, `SELECT room_id FROM room_aliases WHERE creator = $2 AND alias = $1`, "#a:x", "@u:x").Scan(&room)
		if err != nil || room != "!r:x" {
			t.Fatalf("got %q, %v; want !r:x", room, err)
		}
	})
}

// TestCountersSurviveReopen: a counter's committed value is in the
// database, not only in memory, so a restarted server carries on from it;
// what a failed call allocated is given back.
func TestCountersSurviveReopen(t *testing.T) {
	for _, engine := range storagetest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dsn, dir := storagetest.DSN(t, engine), t.TempDir()
			open := func() *storage.DB {
				db, err := storage.Open(ctx, dsn, dir, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				return db
			}
			next := func(db *storage.DB, fail bool) (int64, error) {
				var v int64
				err := db.WriteTx(ctx, func(tx *storage.Tx) error {
					var err error
					if v, err = storage.NextID(ctx, tx, "reopen", 1); err != nil {
						return err
					}
					if fail {
						return errors.New("deliberate failure")
					}
					return nil
				})
				return v, err
			}
			db := open()
			for range 3 {
				if _, err := next(db, false); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := next(db, true); err == nil {
				t.Fatal("failing call succeeded")
			}
			if cur, err := db.CurrentID(ctx, "reopen"); err != nil || cur != 3 {
				t.Fatalf("CurrentID = %d, %v; want 3", cur, err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = open()
			defer db.Close()
			if cur, err := db.CurrentID(ctx, "reopen"); err != nil || cur != 3 {
				t.Fatalf("CurrentID after reopening = %d, %v; want 3", cur, err)
			}
			if v, err := next(db, false); err != nil || v != 4 {
				t.Fatalf("NextID after reopening = %d, %v; want 4", v, err)
			}
		})
	}
}
