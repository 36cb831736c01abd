package storage

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds the prepared statements kept per SQLite pool.
// Queries with generated IN lists differ in text by list length; once the
// cache is full, new texts run unprepared instead of evicting, so a
// statement in use is never closed under a caller.
const maxCachedStmts = 256

// stmtCache keeps SQLite statements prepared, keyed by the query text as
// written ($n placeholders). Without it every call parses and plans its SQL
// again: that was about 40 % of the CPU time of persisting a message.
// PostgreSQL needs no cache: pgx already prepares and caches statements per
// connection.
//
// database/sql prepares a cached *sql.Stmt lazily on each pooled
// connection it runs on, and Tx.StmtContext reuses the connection's copy.
type stmtCache struct {
	pool *sql.DB
	mu   sync.Mutex
	m    map[string]*sql.Stmt
	// pending lists query texts first seen inside a write transaction.
	// The SQLite writer has a single connection, which the transaction
	// holds, so they are prepared before the next transaction begins.
	pending map[string]struct{}
}

func newStmtCache(pool *sql.DB) *stmtCache {
	return &stmtCache{pool: pool, m: map[string]*sql.Stmt{}, pending: map[string]struct{}{}}
}

// lookup returns the cached statement of q, or nil.
func (c *stmtCache) lookup(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[q]
}

// get returns the statement of q, preparing it on the pool when it is new
// and the cache has room; nil means "run q unprepared". It must not be
// called while the caller holds the pool's only connection (see pending).
func (c *stmtCache) get(ctx context.Context, q, bound string) *sql.Stmt {
	c.mu.Lock()
	st, full := c.m[q], len(c.m) >= maxCachedStmts
	c.mu.Unlock()
	if st != nil || full {
		return st
	}
	// Prepared outside the lock: preparing may wait for a pooled
	// connection, and that connection's holder may be asking the cache
	// for another statement.
	st, err := c.pool.PrepareContext(ctx, bound)
	if err != nil {
		return nil // the unprepared call reports the error
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.m[q]; prev != nil || len(c.m) >= maxCachedStmts {
		_ = st.Close()
		return prev
	}
	c.m[q] = st
	return st
}

// defer records q, seen in a transaction, for preparePending.
func (c *stmtCache) deferPrepare(q string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m)+len(c.pending) < maxCachedStmts {
		c.pending[q] = struct{}{}
	}
}

// preparePending prepares the statements deferred by transactions. The
// caller holds the write lock and no connection of the pool.
func (c *stmtCache) preparePending(ctx context.Context, rebind func(string) string) {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	qs := make([]string, 0, len(c.pending))
	for q := range c.pending {
		qs = append(qs, q)
	}
	clear(c.pending)
	c.mu.Unlock()
	for _, q := range qs {
		c.get(ctx, q, rebind(q))
	}
}

// close closes every cached statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		_ = st.Close()
		delete(c.m, q)
	}
}
