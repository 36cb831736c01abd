package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// maxConcurrentWrites bounds the ConcurrentWriteTx transactions open at
// once on PostgreSQL. Each holds a pooled connection until it commits and
// may need a second one for a read in between (room code reads events
// through the pool while persisting). Keeping this well below the pool size
// (32) leaves connections for those reads, so a transaction holding the
// stream counter's row lock can never wait for a connection held by
// transactions that are themselves waiting for that lock.
const maxConcurrentWrites = 8

// ConcurrentWriteTx is WriteTx for callers that already serialise the
// writes that could conflict with theirs (room.Service holds the room's
// lock) and only need the process-wide write order for stream positions.
//
// On SQLite it is WriteTx: the database has one writer anyway, and group
// commit already shares its commits.
//
// On PostgreSQL it runs without writeMu, beside other ConcurrentWriteTx
// calls and beside the one WriteTx holding writeMu. Stream positions still
// become visible in order, because of how NextID allocates them: its
// UPDATE of the counter row takes that row's lock, and PostgreSQL holds it
// until the transaction commits or rolls back. A transaction allocating
// position N therefore cannot do so until the holder of N-1 has committed
// (or rolled back, and then N-1 is allocated again), so positions commit
// in allocation order exactly as under writeMu, and the counter's
// committed value, which /sync reads as "now", never passes a position
// whose transaction is still open. Everything a transaction does before
// its NextID overlaps with other transactions; only NextID to COMMIT is
// serialised, so callers should allocate the stream position as late as
// they can and allocate other numeric IDs with NextNID, whose counters
// hold no lock across a transaction.
//
// After-commit hooks run once the transaction is durable, but not in
// stream order relative to other transactions; the notifier and sender
// wake-ups they carry do not depend on it (see notifier's package doc).
// As with WriteTx, ctx only matters until fn starts. On PostgreSQL the
// transaction also pipelines the statements queued with Tx.Queue and
// QueueNextID (see pipeline).
func (db *DB) ConcurrentWriteTx(ctx context.Context, fn func(tx *Tx) error) error {
	if db.dialect != Postgres {
		return db.WriteTx(ctx, fn)
	}
	select {
	case db.concurrent <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-db.concurrent }()
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.runPipelined(context.WithoutCancel(ctx), fn)
}

// nidBlock is how many values NextNID reserves from a counter at once on
// PostgreSQL. A restart loses the rest of a block; the values are IDs, not
// positions, so the gap is harmless.
const nidBlock = 100

// nidAllocator hands out reserved counter values from memory (PostgreSQL).
type nidAllocator struct {
	mu     sync.Mutex
	blocks map[string]*nidRange
}

// nidRange is a reserved block: next to last, inclusive.
type nidRange struct{ next, last int64 }

// NextNID allocates one numeric ID (an event or snapshot nid) from the
// named counter. Unlike NextID, the value says nothing about commit order
// and may leave gaps: on PostgreSQL it comes from a block reserved in
// memory, the reservation committed on its own beforehand, so the
// transaction takes no lock on the counter row and transactions of
// different rooms do not queue behind each other for IDs (see
// ConcurrentWriteTx). The process owns its reservations, and any other
// process allocating from the same counter with NextID gets values past
// them. On SQLite it is NextID inside tx: there is one writer, and no
// round trip to save.
func NextNID(ctx context.Context, tx *Tx, counter string) (int64, error) {
	db := tx.db
	if db.dialect != Postgres {
		return NextID(ctx, tx, counter, 1)
	}
	a := &db.nids
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.blocks[counter]
	if r == nil || r.next > r.last {
		// Reserved outside tx, on another pooled connection, so the
		// reservation stays committed whatever happens to tx.
		var last int64
		err := db.write.QueryRowContext(context.WithoutCancel(ctx), nextIDUpsert, counter, int64(nidBlock)).Scan(&last)
		if err != nil {
			return 0, fmt.Errorf("reserving ids from counter %s: %w", counter, err)
		}
		if a.blocks == nil {
			a.blocks = map[string]*nidRange{}
		}
		r = &nidRange{next: last - nidBlock + 1, last: last}
		a.blocks[counter] = r
	}
	v := r.next
	r.next++
	return v, nil
}

// NextIDMarker stands, in a statement passed to ExecNextID, for the value
// being allocated.
const NextIDMarker = "{next_id}"

// ExecNextID allocates the next value of counter, as NextID(ctx, tx,
// counter, 1) does, and runs q with NextIDMarker in its text replaced by
// that value; it returns the value. q is typically the INSERT that stores
// the row at a new stream position; it must be a fixed text and, on
// PostgreSQL, a statement that accepts a RETURNING clause.
//
// On PostgreSQL the allocation and q are one statement (a data-modifying
// WITH clause), so one round trip fewer. That matters most for the stream
// counter: from the allocation to COMMIT the transaction holds the
// counter's row lock (see ConcurrentWriteTx), and the round trips in that
// stretch are the ones every event write in the process queues behind.
// On SQLite, which has no data-modifying WITH, it is NextID and then q.
func ExecNextID(ctx context.Context, tx *Tx, counter, q string, args ...any) (int64, error) {
	db := tx.db
	if db.dialect != Postgres {
		v, err := NextID(ctx, tx, counter, 1)
		if err != nil {
			return 0, err
		}
		n := len(args) + 1
		if _, err := tx.ExecContext(ctx, db.nextIDQuery(q, n), append(args, v)...); err != nil {
			return 0, err
		}
		return v, nil
	}
	n := len(args) + 1
	var v int64
	if err := tx.QueryRowContext(ctx, db.nextIDQuery(q, n), append(args, counter)...).Scan(&v); err != nil {
		return 0, err
	}
	return v, nil
}

// nextIDQuery rewrites q for ExecNextID, whose extra argument is $n: the
// value on SQLite, the counter's name on PostgreSQL. Rewrites are memoised
// without bound, so q must be one of a program's fixed texts, never built
// per call.
func (db *DB) nextIDQuery(q string, n int) string {
	key := nextIDKey{q, n}
	if r, ok := db.nextIDQueries.Load(key); ok {
		return r.(string)
	}
	ph := "$" + strconv.Itoa(n)
	var r string
	if db.dialect == Postgres {
		r = `WITH next_id AS (INSERT INTO counters (name, value) VALUES (` + ph + `, 1)
			ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value) ` +
			strings.ReplaceAll(q, NextIDMarker, "(SELECT value FROM next_id)") +
			` RETURNING (SELECT value FROM next_id)`
	} else {
		r = strings.ReplaceAll(q, NextIDMarker, ph)
	}
	db.nextIDQueries.Store(key, r)
	return r
}

type nextIDKey struct {
	q string
	n int
}
