package storage

import (
	"context"
)

// MigrateTo applies the migrations up to version only, so that a test can
// write rows in an older schema and check what a later migration makes of
// them.
func (db *DB) MigrateTo(ctx context.Context, version int64) error {
	p, err := db.migrationProvider()
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}

// ForDialect exposes forDialect to tests.
var ForDialect = forDialect
