package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// TestStatementsRepeatAcrossTransactions runs the same statements many
// times inside and outside transactions, including more distinct query
// texts than the SQLite statement cache holds, and a rolled-back
// transaction, and checks that every result is what plain SQL gives.
func TestStatementsRepeatAcrossTransactions(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ins := `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)`
		for i := range 5 {
			err := db.WriteTx(ctx, func(tx *storage.Tx) error {
				if _, err := tx.ExecContext(ctx, ins, fmt.Sprintf("#a%d:x", i), "!r:x", "@u:x", i); err != nil {
					return err
				}
				var n int
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM room_aliases WHERE room_id = $1`, "!r:x").Scan(&n); err != nil {
					return err
				}
				if n != i+1 {
					return fmt.Errorf("count in transaction %d = %d, want %d", i, n, i+1)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		errBoom := errors.New("boom")
		err := db.WriteTx(ctx, func(tx *storage.Tx) error {
			if _, err := tx.ExecContext(ctx, ins, "#rolled:x", "!r:x", "@u:x", 9); err != nil {
				return err
			}
			return errBoom
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("rolled-back transaction: %v", err)
		}
		// More distinct texts than the cache holds: the overflow runs
		// unprepared and must still answer correctly.
		for i := range 300 {
			var n int
			q := fmt.Sprintf(`SELECT COUNT(*) + %d FROM room_aliases WHERE room_id = $1`, i)
			if err := db.QueryRowContext(ctx, q, "!r:x").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 5+i {
				t.Fatalf("query %d = %d, want %d", i, n, 5+i)
			}
		}
		rows, err := db.QueryContext(ctx, `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY created_ts`, "!r:x")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var a string
			if err := rows.Scan(&a); err != nil {
				t.Fatal(err)
			}
			got = append(got, a)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if want := "[#a0:x #a1:x #a2:x #a3:x #a4:x]"; fmt.Sprint(got) != want {
			t.Fatalf("aliases = %v, want %s", got, want)
		}
	})
}
