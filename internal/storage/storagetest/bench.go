package storagetest

import (
	"context"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/myelin-chat/myelin/internal/storage"
)

// Open returns a freshly migrated database of the engine ("sqlite" or
// "postgres"), closed (and for PostgreSQL dropped) when tb ends. Like Run,
// it skips the PostgreSQL half when MYELIN_TEST_POSTGRES is unset and the
// default server does not answer.
func Open(tb testing.TB, engine string) *storage.DB {
	tb.Helper()
	dsn := DSN(tb, engine)
	db, err := storage.Open(context.Background(), dsn, tb.TempDir(), 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatalf("opening %s: %v", engine, err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		tb.Fatalf("migrating %s: %v", engine, err)
	}
	return db
}

// RunB runs a benchmark once per engine as sub-benchmarks named after
// Engines, each with its own freshly migrated database. Setup done in fn
// before b.ResetTimer is not measured.
func RunB(b *testing.B, fn func(b *testing.B, db *storage.DB)) {
	b.Helper()
	for _, engine := range Engines {
		b.Run(engine, func(b *testing.B) { fn(b, Open(b, engine)) })
	}
}

// ReportCPU starts measuring the CPU time (user + system) of the whole
// test process and returns a function that reports it per iteration as the
// "cpu-ns/op" metric. On a shared or loaded machine wall time per op swings
// with the neighbours' load; CPU time per op moves much less. The CPU
// time of a PostgreSQL server is not included.
func ReportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
