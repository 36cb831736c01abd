package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// TestConcurrentWriteTxCommitOrRollBackAlone runs many write transactions
// at once, so that they share database transactions, with every third one
// failing after it wrote. Each failed call must leave nothing behind, each
// successful one must be durable when WriteTx returns, counters must stay
// gapless for the calls that committed, and after-commit hooks must run in
// stream order.
func TestConcurrentWriteTxCommitOrRollBackAlone(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		errFail := errors.New("deliberate failure")
		const calls = 90
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			hookPos  []int64
			gotPos   []int64
			problems []string
		)
		for i := range calls {
			wg.Go(func() {
				alias := fmt.Sprintf("#c%d:x", i)
				var pos int64
				err := db.WriteTx(ctx, func(tx *storage.Tx) error {
					var err error
					if pos, err = storage.NextID(ctx, tx, "concurrent", 1); err != nil {
						return err
					}
					if _, err := tx.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)`,
						alias, "!r:x", "@u:x", pos); err != nil {
						return err
					}
					if i%3 == 0 {
						return errFail
					}
					tx.AfterCommit(func() {
						mu.Lock()
						hookPos = append(hookPos, pos)
						mu.Unlock()
					})
					return nil
				})
				var n int
				qerr := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM room_aliases WHERE alias = $1`, alias).Scan(&n)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case qerr != nil:
					problems = append(problems, qerr.Error())
				case i%3 == 0 && !errors.Is(err, errFail):
					problems = append(problems, fmt.Sprintf("call %d: got %v, want the deliberate failure", i, err))
				case i%3 == 0 && n != 0:
					problems = append(problems, fmt.Sprintf("call %d failed but its row is there", i))
				case i%3 != 0 && err != nil:
					problems = append(problems, fmt.Sprintf("call %d: %v", i, err))
				case i%3 != 0 && n != 1:
					problems = append(problems, fmt.Sprintf("call %d returned but its row is not readable", i))
				case i%3 != 0:
					gotPos = append(gotPos, pos)
				}
			})
		}
		wg.Wait()
		for _, p := range problems {
			t.Error(p)
		}
		slices.Sort(gotPos)
		want := make([]int64, calls*2/3)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if !slices.Equal(gotPos, want) {
			t.Errorf("committed positions = %v, want 1..%d without gaps", gotPos, len(want))
		}
		if !slices.IsSorted(hookPos) || len(hookPos) != len(want) {
			t.Errorf("after-commit hooks ran for positions %v, want %d in increasing order", hookPos, len(want))
		}
	})
}

// TestWriteTxSkipsCancelledCall checks that a call whose context is already
// done does not run.
func TestWriteTxSkipsCancelledCall(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		ran := false
		err := db.WriteTx(ctx, func(tx *storage.Tx) error { ran = true; return nil })
		if !errors.Is(err, context.Canceled) || ran {
			t.Fatalf("WriteTx with a cancelled context: err %v, ran %v; want context.Canceled, not run", err, ran)
		}
	})
}
