package storage_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// TestTransactionScopeMigration: migration 00010 keeps the remembered
// sends under their path's scope, and strips the redact: prefix that
// redactions' transaction IDs carried.
func TestTransactionScopeMigration(t *testing.T) {
	for _, engine := range storagetest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			db, err := storage.Open(ctx, storagetest.DSN(t, engine), t.TempDir(), 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := db.MigrateTo(ctx, 9); err != nil {
				t.Fatalf("migrating to 00009: %v", err)
			}
			err = db.WriteTx(ctx, func(tx *storage.Tx) error {
				for _, q := range []string{
					`INSERT INTO events (event_nid, event_id, room_id, type, sender, depth, origin_server_ts, stream_pos, snapshot_nid, txn_device, txn_id, json)
						VALUES (1, '$msg', '!r:x', 'm.room.message', '@a:x', 1, 1, 1, 0, 'DEV', 't1', '{}')`,
					`INSERT INTO events (event_nid, event_id, room_id, type, sender, depth, origin_server_ts, stream_pos, snapshot_nid, txn_device, txn_id, json)
						VALUES (2, '$red', '!r:x', 'm.room.redaction', '@a:x', 2, 2, 2, 0, 'DEV', 'redact:t1', '{}')`,
					`INSERT INTO transaction_ids (user_id, device_id, txn_id, event_id, created_ts) VALUES ('@a:x', 'DEV', 't1', '$msg', 5)`,
					`INSERT INTO transaction_ids (user_id, device_id, txn_id, event_id, created_ts) VALUES ('@a:x', 'DEV', 'redact:t1', '$red', 6)`,
				} {
					if _, err := tx.ExecContext(ctx, q); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("writing rows of the old schema: %v", err)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrating: %v", err)
			}
			var scope, evID string
			var ts int64
			if err := db.QueryRowContext(ctx, `SELECT scope, event_id, created_ts FROM transaction_ids WHERE txn_id = 't1'`).Scan(&scope, &evID, &ts); err != nil {
				t.Fatalf("remembered send: %v", err)
			}
			if scope != "send !r:x m.room.message" || evID != "$msg" || ts != 5 {
				t.Fatalf("remembered send = %q %q %d", scope, evID, ts)
			}
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM transaction_ids`).Scan(&n); err != nil || n != 1 {
				t.Fatalf("transaction IDs after the migration = %d, %v; want the send only", n, err)
			}
			var txnID string
			if err := db.QueryRowContext(ctx, `SELECT txn_id FROM events WHERE event_id = '$red'`).Scan(&txnID); err != nil || txnID != "t1" {
				t.Fatalf("redaction's transaction ID = %q, %v; want t1", txnID, err)
			}
		})
	}
}
