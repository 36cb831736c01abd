package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// memCounters keeps SQLite's counters in memory. SQLite has one writer,
// this process, and every write transaction runs in writeBatch under
// writeMu, so the process always knows each counter's value: NextID
// allocates from memory, and a batch writes each counter it moved once,
// just before it commits, instead of an upsert per allocation (which was a
// tenth of the CPU of a message send). CurrentID answers from memory too.
//
// Counters stay gapless, as they are on PostgreSQL: the calls of a batch
// run one after another, so a call that fails (its savepoint rolled back)
// gives back what it allocated before the next call allocates, and a
// batch that fails as a whole gives back everything above the committed
// values. The database must not be written by another process while
// Myelin runs, which SQLite's single writer implies already.
type memCounters struct {
	mu sync.Mutex
	// next is the last value allocated, committed the last value
	// committed, per counter loaded from the database.
	next, committed map[string]int64
}

// allocate is NextID on SQLite: tx records the value, for the batch to
// store before it commits.
func (c *memCounters) allocate(ctx context.Context, tx *Tx, counter string, n int64) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.next[counter]
	if !ok {
		err := tx.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = $1`, counter).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("reading counter %s: %w", counter, err)
		}
		if c.next == nil {
			c.next, c.committed = map[string]int64{}, map[string]int64{}
		}
		c.committed[counter] = v
	}
	if tx.counters == nil {
		tx.counters, tx.countersFrom = map[string]int64{}, map[string]int64{}
	}
	if _, ok := tx.countersFrom[counter]; !ok {
		tx.countersFrom[counter] = v
	}
	v += n
	c.next[counter] = v
	tx.counters[counter] = v
	return v, nil
}

// rollback gives back what the failed call tx allocated; no call
// allocated after it.
func (c *memCounters) rollback(tx *Tx) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, from := range tx.countersFrom {
		c.next[name] = from
	}
}

// abort gives back everything allocated above the committed values, when
// a whole batch fails.
func (c *memCounters) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.next {
		c.next[name] = c.committed[name]
	}
}

// current is CurrentID on SQLite, when the counter is loaded.
func (c *memCounters) current(counter string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.committed[counter]
	return v, ok
}

// moved merges the counters that the calls of a batch which succeeded
// moved, by their highest value.
func moved(txs []*Tx) map[string]int64 {
	var out map[string]int64
	for _, tx := range txs {
		for name, v := range tx.counters {
			if out == nil {
				out = map[string]int64{}
			}
			out[name] = max(out[name], v)
		}
	}
	return out
}

// store writes the counters a batch moved, inside its transaction.
func (c *memCounters) store(ctx context.Context, sqltx *sql.Tx, db *DB, counters map[string]int64) error {
	for name, v := range counters {
		if _, err := sqltx.ExecContext(ctx, db.rebind(`INSERT INTO counters (name, value) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET value = excluded.value`), name, v); err != nil {
			return fmt.Errorf("storing counter %s: %w", name, err)
		}
	}
	return nil
}

// committedUpTo records that a batch storing counters has committed.
func (c *memCounters) committedUpTo(counters map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, v := range counters {
		c.committed[name] = max(c.committed[name], v)
	}
}
