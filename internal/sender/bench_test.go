package sender_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/myelin-chat/myelin/internal/sender"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// BenchmarkEnqueueAndDeliver queues one PDU per write transaction for ten
// destinations, the way room does per event, and waits until an in-process
// transport has accepted every one: ns/op is the cost of one event's
// fan-out, commits and sends included.
func BenchmarkEnqueueAndDeliver(b *testing.B) {
	for _, engine := range storagetest.Engines {
		b.Run(engine, func(b *testing.B) {
			ctx := context.Background()
			db, err := storage.Open(ctx, storagetest.DSN(b, engine), b.TempDir(), 0, quiet())
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if err := db.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			var dests []string
			for i := range 10 {
				dests = append(dests, fmt.Sprintf("d%d.test", i))
			}
			tr := newTransport(nil)
			s := sender.New(db, origin, tr, quiet())
			s.Start(ctx)
			defer s.Close()
			b.ResetTimer()
			for i := range b.N {
				if err := db.WriteTx(ctx, func(tx *storage.Tx) error { return s.EnqueuePDU(ctx, tx, dests, pdu(i)) }); err != nil {
					b.Fatal(err)
				}
			}
			deadline := time.Now().Add(time.Minute)
			for s.Stats().SentPDUs < int64(b.N*len(dests)) {
				if time.Now().After(deadline) {
					b.Fatalf("sent %d of %d", s.Stats().SentPDUs, b.N*len(dests))
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.SentTransactions)/float64(b.N), "txns/op")
		})
	}
}
