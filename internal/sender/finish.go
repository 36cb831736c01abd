package sender

import (
	"context"
	"fmt"
	"sync"

	"github.com/myelin-chat/myelin/internal/storage"
)

// finisher group-commits the removal of finished transactions from the
// queue. A worker whose transaction ends while another removal is
// committing joins the next commit, so many destinations acknowledging the
// same event cost about one write, not one each: every write waits for the
// process-wide write order, which events take too.
//
// There is no goroutine: the first worker to arrive leads one commit of
// everything pending, its own removal included, then hands the lead to the
// oldest waiter, if any, so no worker commits for others more than once.
type finisher struct {
	db      *storage.DB
	mu      sync.Mutex
	leading bool
	pending []*finishReq
}

type finishReq struct {
	dest string
	t    *txn
	// done receives the commit's error, or the lead.
	done chan finishResult
}

type finishResult struct {
	err  error
	lead bool
}

// finish removes t, the destination's finished transaction, from the queue
// and returns once that is committed.
func (f *finisher) finish(ctx context.Context, dest string, t *txn) error {
	r := &finishReq{dest: dest, t: t, done: make(chan finishResult, 1)}
	f.mu.Lock()
	f.pending = append(f.pending, r)
	lead := !f.leading
	f.leading = true
	f.mu.Unlock()
	if !lead {
		res := <-r.done
		if !res.lead {
			return res.err
		}
	}
	// r is still pending: it is in the batch taken here.
	f.mu.Lock()
	batch := f.pending
	f.pending = nil
	f.mu.Unlock()
	err := finishTxns(ctx, f.db, batch)
	for _, b := range batch {
		if b != r {
			b.done <- finishResult{err: err}
		}
	}
	f.mu.Lock()
	if len(f.pending) > 0 {
		f.pending[0].done <- finishResult{lead: true}
	} else {
		f.leading = false
	}
	f.mu.Unlock()
	return err
}

// finishTxns removes transactions that succeeded (or were given up), with
// their entries, from their destinations' queues, and the payloads no
// destination still waits for, in one write transaction.
func finishTxns(ctx context.Context, db *storage.DB, reqs []*finishReq) error {
	err := db.WriteTx(ctx, func(tx *storage.Tx) error {
		for _, r := range reqs {
			if r.t.persisted {
				if _, err := tx.ExecContext(ctx, `DELETE FROM sender_txns WHERE destination = $1`, r.dest); err != nil {
					return err
				}
			}
			if err := deleteRows(ctx, tx, r.dest, r.t.nids); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("removing %d delivered transactions from the queue: %w", len(reqs), err)
	}
	return nil
}
