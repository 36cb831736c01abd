package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// pipeline runs a ConcurrentWriteTx transaction on PostgreSQL on one
// pooled connection, sending the statements queued with Tx.Queue and
// QueueNextID together with the next statement that needs its answer, or
// with COMMIT, as one pgx batch: one round trip for the lot.
//
// Round trips, not work, bound event writes on PostgreSQL: each one waits
// for the Go scheduler on one side and a PostgreSQL backend on the other,
// 1-2 ms each on a loaded 2-core machine. A message send queues all of
// its statements, so BEGIN, the transaction ID, the edge, the forward
// extremity, the event with its stream position and COMMIT go out in a
// single round trip, and the stream counter's row lock (taken by the
// event's INSERT, see ConcurrentWriteTx) is held only while PostgreSQL
// runs the end of the batch and flushes its WAL, never while a reply
// travels to Myelin and the next statement travels back.
//
// database/sql does not know about the transaction: BEGIN is the first
// queued statement and COMMIT or ROLLBACK the last one sent. A connection
// left inside a transaction by a failure is discarded (pgx's stdlib
// ResetSession refuses it, and rollback marks it bad when ROLLBACK
// fails).
type pipeline struct {
	conn  *sql.Conn
	queue []queued
	// err is the first failure of a queued statement; the transaction
	// is then aborted and can only roll back.
	err error
	// sent is set once BEGIN has gone out.
	sent bool
}

// queued is a statement waiting to be sent; dst, when set, receives its
// single int64 result column.
type queued struct {
	q    string
	args []any
	dst  *int64
}

// failedRow returns a *sql.Row whose Scan fails: database/sql gives no
// other way to make one. err itself is kept in p.err and reported by
// ConcurrentWriteTx.
func (p *pipeline) failedRow(err error) *sql.Row {
	if p.err == nil {
		p.err = err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return p.conn.QueryRowContext(ctx, "SELECT 1")
}

// flush sends the queued statements, followed by COMMIT when commit is
// set, as one batch and reads every result.
func (p *pipeline) flush(ctx context.Context, commit bool) error {
	if p.err != nil {
		return p.err
	}
	if len(p.queue) == 0 && !commit {
		return nil
	}
	queue := p.queue
	p.queue = nil
	p.sent = true
	err := p.conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("storage: unexpected driver connection %T", dc)
		}
		b := &pgx.Batch{}
		for _, s := range queue {
			b.Queue(s.q, s.args...)
		}
		if commit {
			b.Queue("COMMIT")
		}
		br := sc.Conn().SendBatch(ctx, b)
		var err error
		for _, s := range queue {
			if s.dst != nil {
				err = br.QueryRow().Scan(s.dst)
			} else {
				_, err = br.Exec()
			}
			if err != nil {
				break
			}
		}
		if err == nil && commit {
			_, err = br.Exec()
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		p.err = err
	}
	return err
}

// rollback ends the transaction after a failure. A connection that cannot
// roll back is closed rather than returned to the pool.
func (p *pipeline) rollback(ctx context.Context) {
	if !p.sent {
		return // BEGIN is still in the queue: nothing to undo
	}
	if _, err := p.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		_ = p.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// Queue runs q, a statement whose result the caller does not need, as part
// of tx. Inside ConcurrentWriteTx on PostgreSQL it is sent later, in one
// round trip with the next statement that needs an answer or with COMMIT;
// a failure then surfaces there and fails the whole transaction, so a
// caller must not rely on Queue's own error and must treat any failure as
// final (no "try the INSERT, on conflict do something else"). Elsewhere it
// runs at once. The statements of a transaction still run in the order
// they were issued.
func (t *Tx) Queue(ctx context.Context, q string, args ...any) error {
	if t.pipe != nil {
		t.pipe.queue = append(t.pipe.queue, queued{q: q, args: args})
		return nil
	}
	_, err := t.ExecContext(ctx, q, args...)
	return err
}

// QueueNextID is ExecNextID for a statement queued like Tx.Queue: the
// allocated value is stored in *dst once the statement has run, which on
// PostgreSQL inside ConcurrentWriteTx is only at the next statement that
// needs an answer or at COMMIT. Use it when nothing in the transaction
// needs the value before then.
func QueueNextID(ctx context.Context, tx *Tx, dst *int64, counter, q string, args ...any) error {
	if tx.pipe == nil {
		v, err := ExecNextID(ctx, tx, counter, q, args...)
		*dst = v
		return err
	}
	n := len(args) + 1
	tx.pipe.queue = append(tx.pipe.queue, queued{q: tx.db.nextIDQuery(q, n), args: append(args, counter), dst: dst})
	return nil
}

// runPipelined is ConcurrentWriteTx on PostgreSQL.
func (db *DB) runPipelined(ctx context.Context, fn func(tx *Tx) error) error {
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer conn.Close()
	p := &pipeline{conn: conn, queue: []queued{{q: "BEGIN"}}}
	tx := &Tx{db: db, pipe: p}
	if err := fn(tx); err != nil {
		p.rollback(ctx)
		if p.err != nil && !errors.Is(err, p.err) {
			return errors.Join(p.err, err)
		}
		return err
	}
	if err := p.flush(ctx, true); err != nil {
		p.rollback(ctx)
		return fmt.Errorf("committing transaction: %w", err)
	}
	for _, f := range tx.beforePublish {
		f()
	}
	for _, f := range tx.afterCommit {
		f()
	}
	return nil
}
