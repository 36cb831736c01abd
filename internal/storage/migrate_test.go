package storage_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
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

// TestEventSearchMigration: migration 00018 creates each engine's own
// full-text index (its dialect sections) and indexes the searchable
// events stored before it, leaving out redacted events, outliers,
// rejected events and non-string fields.
func TestEventSearchMigration(t *testing.T) {
	for _, engine := range storagetest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			db, err := storage.Open(ctx, storagetest.DSN(t, engine), t.TempDir(), 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := db.MigrateTo(ctx, 15); err != nil {
				t.Fatalf("migrating to 00015: %v", err)
			}
			rows := []struct {
				nid                        int
				typ, stateKey, json, extra string
			}{
				{1, "m.room.message", "", `{"content":{"body":"walrus one"}}`, ""},
				{2, "m.room.name", "''", `{"content":{"name":"walrus two"}}`, ""},
				{3, "m.room.topic", "''", `{"content":{"topic":"walrus three"}}`, ""},
				{4, "m.room.message", "", `{"content":{"body":"walrus redacted"}}`, "redacted"},
				{5, "m.room.message", "", `{"content":{"body":"walrus outlier"}}`, "outlier"},
				{6, "m.room.message", "", `{"content":{"body":"walrus rejected"}}`, "rejected"},
				{7, "m.room.message", "", `{"content":{"body":5}}`, ""},
				{8, "m.room.encrypted", "", `{"content":{"body":"walrus"}}`, ""},
				{9, "m.room.name", "'x'", `{"content":{"name":"walrus keyed"}}`, ""},
			}
			err = db.WriteTx(ctx, func(tx *storage.Tx) error {
				for _, r := range rows {
					sk := "NULL"
					if r.stateKey != "" {
						sk = r.stateKey
					}
					redacted, outlier, rejected := "NULL", 0, 0
					switch r.extra {
					case "redacted":
						redacted = "'$r'"
					case "outlier":
						outlier = 1
					case "rejected":
						rejected = 1
					}
					q := fmt.Sprintf(`INSERT INTO events (event_nid, event_id, room_id, type, state_key, sender, depth, origin_server_ts, stream_pos, snapshot_nid, json, redacted_by, outlier, rejected)
						VALUES (%d, '$e%d', '!r:x', '%s', %s, '@a:x', 1, 1, %d, 0, '%s', %s, %d, %d)`, r.nid, r.nid, r.typ, sk, r.nid, r.json, redacted, outlier, rejected)
					if _, err := tx.ExecContext(ctx, q); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("writing events of the old schema: %v", err)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrating: %v", err)
			}
			ft := db.FullText("event_search", "event_nid")
			res, err := db.QueryContext(ctx, `SELECT `+ft.Key("s")+` FROM event_search s WHERE `+ft.Match("s", "$1")+` ORDER BY 1`,
				ft.Query(storage.TextQuery{{All: [][]string{{"walrus"}}}}))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			var got []int
			for res.Next() {
				var n int
				if err := res.Scan(&n); err != nil {
					t.Fatal(err)
				}
				got = append(got, n)
			}
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			if want := []int{1, 2, 3}; !slices.Equal(got, want) {
				t.Errorf("indexed events %v, want %v", got, want)
			}
		})
	}
}
