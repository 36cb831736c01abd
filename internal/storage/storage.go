// Package storage owns the database handle: opening SQLite or PostgreSQL,
// the numbered migration set, transactions and the dialect differences.
//
// Domain packages write each query once, with $1-style placeholders and
// portable SQL (ON CONFLICT upserts, RETURNING); storage rewrites what the
// engine needs. SQLite gets a single-connection writer pool beside a reader
// pool, so writes never fight over the database lock. Stream positions and
// numeric IDs come from the counters table (see NextID), which works the same
// on both engines. Write transactions are serialised in the process
// (WriteTx), except ConcurrentWriteTx on PostgreSQL, which relies on the
// stream counter's row lock for ordering and pipelines its statements.
//
// storage imports no other Myelin package.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver
	_ "modernc.org/sqlite"             // embedded SQLite driver
)

// Dialect names a database engine.
type Dialect int

const (
	// SQLite is the embedded default.
	SQLite Dialect = iota
	// Postgres is PostgreSQL through pgx.
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is the database handle shared by every store.
type DB struct {
	dialect Dialect
	read    *sql.DB
	write   *sql.DB
	// writeMu serialises write transactions in this process so that stream
	// positions commit in the order they were allocated: a reader that sees
	// position N has seen everything below N. On PostgreSQL,
	// ConcurrentWriteTx runs beside it and relies on the counter row lock
	// for that order instead.
	writeMu sync.Mutex
	writes  writeQueue
	log     *slog.Logger

	// PostgreSQL only: slots for ConcurrentWriteTx, and NextNID's
	// reserved blocks.
	concurrent chan struct{}
	nids       nidAllocator

	// SQLite only: prepared statements of each pool, and $n → ?n
	// rewrites by query text (see stmtCache and rebind).
	readStmts, writeStmts *stmtCache
	rebound               sync.Map // string → string
	reboundN              atomic.Int64
	counters              memCounters

	nextIDQueries sync.Map // nextIDKey → string (see ExecNextID)
}

// Open connects to the database named by dsn. An empty dsn, or one starting
// with "sqlite:" or "file:", opens an SQLite file (in dataDir when empty);
// "postgres://" or "postgresql://" opens PostgreSQL. It retries for up to
// wait while the database is not yet reachable.
func Open(ctx context.Context, dsn, dataDir string, wait time.Duration, log *slog.Logger) (*DB, error) {
	db := &DB{log: log}
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db.dialect = Postgres
		db.read, err = sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("opening postgres: %w", err)
		}
		db.read.SetMaxOpenConns(32)
		db.read.SetMaxIdleConns(16)
		db.write = db.read
		db.concurrent = make(chan struct{}, maxConcurrentWrites)
	default:
		db.dialect = SQLite
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:")
		if path == "" {
			path = filepath.Join(dataDir, "myelin.db")
		}
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("creating database directory: %w", err)
			}
		}
		pragmas := "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
		u := "file:" + (&url.URL{Path: path}).EscapedPath()
		db.write, err = sql.Open("sqlite", u+"?"+pragmas+"&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("opening sqlite: %w", err)
		}
		db.write.SetMaxOpenConns(1)
		db.read, err = sql.Open("sqlite", u+"?"+pragmas+"&_pragma=query_only(1)")
		if err != nil {
			return nil, fmt.Errorf("opening sqlite: %w", err)
		}
		db.read.SetMaxOpenConns(8)
		db.read.SetMaxIdleConns(8)
		db.readStmts, db.writeStmts = newStmtCache(db.read), newStmtCache(db.write)
	}
	deadline := time.Now().Add(wait)
	for {
		err = db.write.PingContext(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		log.Warn("database not reachable yet, retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to %s database: %w", db.dialect, err)
	}
	return db, nil
}

// Dialect reports the engine behind db.
func (db *DB) Dialect() Dialect { return db.dialect }

// Close closes every pool.
func (db *DB) Close() error {
	var errs []error
	if db.readStmts != nil {
		db.readStmts.close()
		db.writeStmts.close()
	}
	if db.write != nil && db.write != db.read {
		errs = append(errs, db.write.Close())
	}
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	return errors.Join(errs...)
}

// Ping checks that the database answers; /health uses it.
func (db *DB) Ping(ctx context.Context) error { return db.read.PingContext(ctx) }

// Querier runs queries; both *DB and *Tx implement it.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var placeholder = regexp.MustCompile(`\$(\d+)`)

// maxRebound bounds the memo of rewritten query texts.
const maxRebound = 4096

func (db *DB) rebind(q string) string {
	if db.dialect != SQLite {
		return q
	}
	if r, ok := db.rebound.Load(q); ok {
		return r.(string)
	}
	r := placeholder.ReplaceAllString(q, "?$1")
	if db.reboundN.Load() < maxRebound {
		if _, loaded := db.rebound.LoadOrStore(q, r); !loaded {
			db.reboundN.Add(1)
		}
	}
	return r
}

// ExecContext runs a statement outside a transaction, on the writer.
func (db *DB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	if db.writeStmts != nil {
		if st := db.writeStmts.get(ctx, q, db.rebind(q)); st != nil {
			return st.ExecContext(ctx, args...)
		}
	}
	return db.write.ExecContext(ctx, db.rebind(q), args...)
}

// QueryContext runs a read query.
func (db *DB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if db.readStmts != nil {
		if st := db.readStmts.get(ctx, q, db.rebind(q)); st != nil {
			return st.QueryContext(ctx, args...)
		}
	}
	return db.read.QueryContext(ctx, db.rebind(q), args...)
}

// QueryRowContext runs a read query returning at most one row.
func (db *DB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if db.readStmts != nil {
		if st := db.readStmts.get(ctx, q, db.rebind(q)); st != nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	return db.read.QueryRowContext(ctx, db.rebind(q), args...)
}

// Tx is a write transaction.
type Tx struct {
	tx *sql.Tx
	db *DB
	// pipe, instead of tx, runs a ConcurrentWriteTx on PostgreSQL (see
	// pipeline).
	pipe *pipeline
	// afterCommit runs once the transaction is durable; beforePublish
	// runs before that, see BeforePublish.
	afterCommit, beforePublish []func()
	// counters holds, on SQLite, the counters this call moved and their
	// last value, countersFrom their value before it (see memCounters).
	counters, countersFrom map[string]int64
}

// stmt returns the transaction's copy of the cached statement of q, or nil
// when q is not cached yet (it is then prepared before the next
// transaction; see stmtCache.pending).
func (t *Tx) stmt(ctx context.Context, q string) *sql.Stmt {
	c := t.db.writeStmts
	if c == nil {
		return nil
	}
	if st := c.lookup(q); st != nil {
		return t.tx.StmtContext(ctx, st)
	}
	c.deferPrepare(q)
	return nil
}

// ExecContext runs a statement in the transaction.
func (t *Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx) // see WriteTx
	if t.pipe != nil {
		if err := t.pipe.flush(ctx, false); err != nil {
			return nil, err
		}
		return t.pipe.conn.ExecContext(ctx, q, args...)
	}
	if st := t.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, t.db.rebind(q), args...)
}

// QueryContext runs a query in the transaction.
func (t *Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx) // see WriteTx
	if t.pipe != nil {
		if err := t.pipe.flush(ctx, false); err != nil {
			return nil, err
		}
		return t.pipe.conn.QueryContext(ctx, q, args...)
	}
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, t.db.rebind(q), args...)
}

// QueryRowContext runs a single-row query in the transaction.
func (t *Tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx) // see WriteTx
	if t.pipe != nil {
		if err := t.pipe.flush(ctx, false); err != nil {
			// A query that cannot run reports err from Scan: an already
			// cancelled context makes QueryRowContext do just that.
			return t.pipe.failedRow(err)
		}
		return t.pipe.conn.QueryRowContext(ctx, q, args...)
	}
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, t.db.rebind(q), args...)
}

// AfterCommit registers f to run after the transaction commits, still inside
// the process-wide write order (so notifications go out in stream order).
func (t *Tx) AfterCommit(f func()) { t.afterCommit = append(t.afterCommit, f) }

// BeforePublish registers f to run once the transaction has committed but,
// on SQLite, before CurrentID shows its positions: a reader that takes
// CurrentID as "now" finds whatever f recorded about everything up to
// now. It suits in-memory indexes of committed rows. On PostgreSQL,
// CurrentID reads the database, so f runs with the AfterCommit hooks
// and readers get no such guarantee.
func (t *Tx) BeforePublish(f func()) { t.beforePublish = append(t.beforePublish, f) }

// WriteTx runs fn in a write transaction and commits it when fn returns nil.
// Write transactions are serialised within the process. On SQLite,
// concurrent calls may share one database transaction (group commit, see
// writeBatch): fn then runs inside a savepoint, so its writes still commit
// or roll back as a unit, and WriteTx returns only once they are committed
// (or rolled back). Once fn starts, cancelling ctx no longer interrupts
// its statements, which would break a shared transaction; a ctx done
// before fn starts makes WriteTx return its error without running fn.
func (db *DB) WriteTx(ctx context.Context, fn func(tx *Tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	q := &db.writes
	q.mu.Lock()
	q.pending = append(q.pending, r)
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	if !lead {
		if err := <-r.done; err != errLead {
			return err
		}
	}
	// This call leads: it runs the queue's head as one transaction
	// (including r), then hands the lead to the next waiter, so no caller
	// keeps running other callers' batches.
	q.mu.Lock()
	n := 1
	if db.dialect == SQLite {
		n = min(len(q.pending), maxWriteBatch)
	}
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	q.mu.Unlock()
	db.writeBatch(batch)
	q.mu.Lock()
	if len(q.pending) > 0 {
		q.pending[0].done <- errLead
	} else {
		q.leading = false
	}
	q.mu.Unlock()
	return <-r.done
}

// maxWriteBatch bounds how many WriteTx calls share one SQLite
// transaction.
//
// PostgreSQL runs one call per transaction: there the three savepoint
// statements per call are three more round trips under the write lock,
// and on the 2-core reference machine a round trip (about 1 ms under load)
// costs more than the WAL flush a shared commit saves (0.4 ms). Batching
// would pay off there once the statements are pipelined (pgx batches).
const maxWriteBatch = 64

// errLead tells a waiting WriteTx that it now leads the queue.
var errLead = errors.New("storage: lead the write queue")

// writeQueue collects WriteTx calls waiting for the writer.
type writeQueue struct {
	mu      sync.Mutex
	pending []*writeReq
	leading bool // a WriteTx is running a batch or about to
}

// writeReq is one WriteTx call; done receives its result (or errLead).
type writeReq struct {
	ctx  context.Context
	fn   func(tx *Tx) error
	done chan error
	err  error
	tx   *Tx
}

// writeBatch runs the calls in one transaction and reports each result.
//
// Beginning and committing are a large part of the cost of a small SQLite
// write: about 0.1 ms of CPU (BEGIN IMMEDIATE, then appending the changed
// pages to the WAL; see BenchmarkWriteTx/sqlite/nextid) of a message's
// 0.4-0.7 ms. While one batch commits, the next calls queue up, so under
// load one commit covers many events, and when idle a batch is a single
// call with no savepoint: exactly the old one-transaction-per-call path.
// Stream positions keep committing in allocation order, because batches
// run one at a time under writeMu and a batch commits all at once.
func (db *DB) writeBatch(batch []*writeReq) {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	ctx := context.WithoutCancel(batch[0].ctx)
	if db.writeStmts != nil {
		db.writeStmts.preparePending(ctx, db.rebind)
	}
	fail := func(err error) {
		if db.dialect != Postgres {
			db.counters.abort()
		}
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
			r.done <- r.err
		}
	}
	sqltx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("beginning transaction: %w", err))
		return
	}
	savepoints := len(batch) > 1
	committed := 0
	for _, r := range batch {
		if r.err = r.ctx.Err(); r.err != nil {
			continue
		}
		if savepoints {
			if _, err := sqltx.ExecContext(ctx, "SAVEPOINT write_call"); err != nil {
				_ = sqltx.Rollback()
				fail(fmt.Errorf("opening savepoint: %w", err))
				return
			}
		}
		tx := &Tx{tx: sqltx, db: db}
		if r.err = r.fn(tx); r.err != nil {
			if db.dialect != Postgres {
				db.counters.rollback(tx)
			}
			if !savepoints {
				_ = sqltx.Rollback()
				fail(nil)
				return
			}
			if _, err := sqltx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT write_call"); err != nil {
				_ = sqltx.Rollback()
				fail(fmt.Errorf("rolling back to savepoint: %w", err))
				return
			}
		} else {
			r.tx = tx
			committed++
		}
		if savepoints {
			if _, err := sqltx.ExecContext(ctx, "RELEASE SAVEPOINT write_call"); err != nil {
				_ = sqltx.Rollback()
				fail(fmt.Errorf("releasing savepoint: %w", err))
				return
			}
		}
	}
	if committed == 0 {
		_ = sqltx.Rollback()
		fail(nil)
		return
	}
	var counters map[string]int64
	if db.dialect != Postgres {
		txs := make([]*Tx, 0, committed)
		for _, r := range batch {
			if r.tx != nil {
				txs = append(txs, r.tx)
			}
		}
		counters = moved(txs)
		if err := db.counters.store(ctx, sqltx, db, counters); err != nil {
			_ = sqltx.Rollback()
			fail(err)
			return
		}
	}
	if err := sqltx.Commit(); err != nil {
		fail(fmt.Errorf("committing transaction: %w", err))
		return
	}
	for _, r := range batch {
		if r.tx != nil {
			for _, f := range r.tx.beforePublish {
				f()
			}
		}
	}
	if counters != nil {
		// Before the hooks: they wake readers, who must see the new
		// positions as current.
		db.counters.committedUpTo(counters)
	}
	for _, r := range batch {
		if r.tx != nil {
			for _, f := range r.tx.afterCommit {
				f()
			}
		}
		r.done <- r.err
	}
}

// NextID allocates n consecutive values from the named counter and returns
// the last one. Counters back stream positions and numeric IDs.
//
// It is one upsert, so that a counter's first use cannot race with itself
// (two transactions both finding no row and both inserting it) now that
// ConcurrentWriteTx transactions run side by side on PostgreSQL. The
// update takes the counter row's lock until the transaction ends, which
// is what orders stream positions (see ConcurrentWriteTx). On SQLite the
// counter is kept in memory and stored once per batch (see memCounters).
func NextID(ctx context.Context, tx *Tx, counter string, n int64) (int64, error) {
	if tx.db.dialect != Postgres {
		return tx.db.counters.allocate(ctx, tx, counter, n)
	}
	var v int64
	err := tx.QueryRowContext(ctx, nextIDUpsert, counter, n).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("allocating from counter %s: %w", counter, err)
	}
	return v, nil
}

// nextIDUpsert adds $2 to counter $1, creating it at $2.
const nextIDUpsert = `INSERT INTO counters (name, value) VALUES ($1, $2)
	ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value RETURNING value`

// CurrentID returns the counter's current value (0 if it was never used):
// the last value committed. On SQLite it comes from memory once the
// counter has been written in this run.
func (db *DB) CurrentID(ctx context.Context, counter string) (int64, error) {
	if db.dialect != Postgres {
		if v, ok := db.counters.current(counter); ok {
			return v, nil
		}
	}
	var v int64
	err := db.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = $1`, counter).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading counter %s: %w", counter, err)
	}
	return v, nil
}

// IsUniqueViolation reports whether err is a unique-constraint failure on
// either engine.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "SQLSTATE 23505") ||
		strings.Contains(s, "duplicate key value")
}

// Placeholders returns n placeholders numbered from first, "$first,...",
// for an IN list of arguments that start at position first.
func Placeholders(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(first + i))
	}
	return b.String()
}

// Bool converts a Go bool to the 0/1 integer both schemas store.
func Bool(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
