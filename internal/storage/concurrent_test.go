package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// TestConcurrentWriteTxKeepsPositionsInOrder runs ConcurrentWriteTx calls
// at once, mixed with WriteTx calls on the same counter, while a reader
// checks the guarantee /sync relies on: whenever the counter's committed
// value is N, every position up to N is readable. Positions are allocated
// by the three ways there are (NextID, ExecNextID, QueueNextID); a third
// of the calls fail after allocating, some through a queued statement
// that fails only at COMMIT, and must leave nothing behind.
func TestConcurrentWriteTxKeepsPositionsInOrder(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		const counter = "ordered"
		const calls = 120
		errFail := errors.New("deliberate failure")
		insert := `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, ` + storage.NextIDMarker + `)`
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			problems []string
			done     atomic.Bool
			checks   atomic.Int64
		)
		problem := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		// The row the i%3 == 2 calls collide with.
		if _, err := db.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ('#taken:x', '!r:x', '@u:x', -1)`); err != nil {
			t.Fatal(err)
		}
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			for !done.Load() || checks.Load() == 0 {
				now, err := db.CurrentID(ctx, counter)
				if err != nil {
					problem("reading counter: %v", err)
					return
				}
				var n int64
				if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM room_aliases WHERE created_ts BETWEEN 1 AND $1`, now).Scan(&n); err != nil {
					problem("counting rows: %v", err)
					return
				}
				if n != now {
					problem("counter at %d but %d rows at or below it are readable", now, n)
					return
				}
				checks.Add(1)
			}
		}()
		for i := range calls {
			wg.Go(func() {
				alias := fmt.Sprintf("#o%d:x", i)
				write := db.ConcurrentWriteTx
				if i%5 == 0 {
					write = db.WriteTx
				}
				var pos int64
				err := write(ctx, func(tx *storage.Tx) error {
					if i%3 == 2 {
						// Fails at COMMIT on PostgreSQL: the alias exists.
						if err := tx.Queue(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ('#taken:x', '!r:x', '@u:x', -1)`); err != nil {
							return err
						}
					}
					var err error
					switch i % 4 {
					case 0:
						if pos, err = storage.NextID(ctx, tx, counter, 1); err == nil {
							_, err = tx.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)`,
								alias, "!r:x", "@u:x", pos)
						}
					case 1:
						pos, err = storage.ExecNextID(ctx, tx, counter, insert, alias, "!r:x", "@u:x")
					default:
						err = storage.QueueNextID(ctx, tx, &pos, counter, insert, alias, "!r:x", "@u:x")
					}
					if err != nil {
						return err
					}
					if i%3 == 1 {
						return errFail
					}
					return nil
				})
				switch {
				case i%3 == 1 && !errors.Is(err, errFail):
					problem("call %d: got %v, want the deliberate failure", i, err)
				case i%3 == 2 && !storage.IsUniqueViolation(err):
					problem("call %d: got %v, want a unique violation", i, err)
				case i%3 == 0 && err != nil:
					problem("call %d: %v", i, err)
				case i%3 == 0 && pos <= 0:
					problem("call %d committed without a position (%d)", i, pos)
				}
			})
		}
		wg.Wait()
		done.Store(true)
		<-readerDone
		for _, p := range problems {
			t.Error(p)
		}
		var got []int64
		rows, err := db.QueryContext(ctx, `SELECT created_ts FROM room_aliases WHERE created_ts > 0 ORDER BY created_ts`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var p int64
			if err := rows.Scan(&p); err != nil {
				t.Fatal(err)
			}
			got = append(got, p)
		}
		want := make([]int64, calls/3)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if !slices.Equal(got, want) {
			t.Errorf("committed positions = %v, want 1..%d without gaps", got, len(want))
		}
		if now, _ := db.CurrentID(ctx, counter); now != int64(len(want)) {
			t.Errorf("counter = %d, want %d", now, len(want))
		}
	})
}

// TestNextNIDIsUnique allocates IDs from many transactions at once, some
// of which roll back, and checks that no value is handed out twice.
func TestNextNIDIsUnique(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			seen = map[int64]int{}
		)
		errFail := errors.New("deliberate failure")
		for i := range 300 {
			wg.Go(func() {
				var got []int64
				err := db.ConcurrentWriteTx(ctx, func(tx *storage.Tx) error {
					for range 3 {
						v, err := storage.NextNID(ctx, tx, "nid_test")
						if err != nil {
							return err
						}
						got = append(got, v)
					}
					if i%4 == 0 {
						return errFail
					}
					return nil
				})
				if err != nil && !errors.Is(err, errFail) {
					t.Errorf("call %d: %v", i, err)
				}
				// On SQLite a rolled-back call's IDs are allocated again,
				// so only committed calls count there; on PostgreSQL no
				// value is ever handed out twice.
				if err != nil && db.Dialect() != storage.Postgres {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, v := range got {
					seen[v]++
				}
			})
		}
		wg.Wait()
		for v, n := range seen {
			if n > 1 {
				t.Errorf("id %d handed out %d times", v, n)
			}
			if v <= 0 {
				t.Errorf("id %d is not positive", v)
			}
		}
		if db.Dialect() == storage.Postgres && len(seen) != 900 {
			t.Errorf("%d distinct ids, want 900", len(seen))
		}
	})
}
