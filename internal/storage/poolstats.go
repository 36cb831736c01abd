package storage

import "database/sql"

// PoolStats returns the connection pool statistics by pool, for metrics:
// "read" and "write" on SQLite, "main" on PostgreSQL (one pool).
func (db *DB) PoolStats() map[string]sql.DBStats {
	if db.write == db.read {
		return map[string]sql.DBStats{"main": db.read.Stats()}
	}
	return map[string]sql.DBStats{"read": db.read.Stats(), "write": db.write.Stats()}
}
