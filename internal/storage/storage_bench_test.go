package storage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// BenchmarkWriteTx measures the storage layer alone on both engines: one
// write transaction that allocates a stream position and inserts one row
// (the skeleton of every event write), and a point read on the reader.
func BenchmarkWriteTx(b *testing.B) {
	ctx := context.Background()
	storagetest.RunB(b, func(b *testing.B, db *storage.DB) {
		b.Run("insert", func(b *testing.B) {
			b.ReportAllocs()
			defer storagetest.ReportCPU(b)()
			var i int
			for b.Loop() {
				i++
				err := db.WriteTx(ctx, func(tx *storage.Tx) error {
					pos, err := storage.NextID(ctx, tx, "stream", 1)
					if err != nil {
						return err
					}
					_, err = tx.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)`,
						fmt.Sprintf("#a%d:bench.example", i), "!room:bench.example", "@u:bench.example", pos)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("nextid", func(b *testing.B) {
			b.ReportAllocs()
			defer storagetest.ReportCPU(b)()
			for b.Loop() {
				if err := db.WriteTx(ctx, func(tx *storage.Tx) error {
					_, err := storage.NextID(ctx, tx, "bench", 1)
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("read", func(b *testing.B) {
			b.ReportAllocs()
			defer storagetest.ReportCPU(b)()
			for b.Loop() {
				if _, err := db.CurrentID(ctx, "stream"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
