package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunPacedStopsAtTotal(t *testing.T) {
	var calls atomic.Int64
	n := runPaced(context.Background(), 1e6, 5*time.Second, 50, 4, func(context.Context, int) { calls.Add(1) })
	if n != 50 || calls.Load() != 50 {
		t.Fatalf("dispatched %d, ran %d; want 50/50", n, calls.Load())
	}
}

func TestRunPacedHoldsRate(t *testing.T) {
	// 500/s for 300ms is ~150 calls; the deadline, not the total, ends it.
	var calls atomic.Int64
	start := time.Now()
	n := runPaced(context.Background(), 500, 300*time.Millisecond, 100000, 8, func(context.Context, int) { calls.Add(1) })
	took := time.Since(start)
	if n < 100 || n > 170 {
		t.Errorf("dispatched %d calls in 300ms at 500/s, want ~150", n)
	}
	if int64(n) != calls.Load() {
		t.Errorf("dispatched %d but ran %d", n, calls.Load())
	}
	if took > 2*time.Second {
		t.Errorf("took %v, want about 300ms", took)
	}
}

func TestRunPacedCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	runPaced(ctx, 10, time.Hour, 1000, 1, func(context.Context, int) {})
	if time.Since(start) > 2*time.Second {
		t.Fatal("runPaced did not stop when its context ended")
	}
}

func TestTrackerObserve(t *testing.T) {
	tr := newTracker("runa", 4)
	rec, body := tr.begin(2, 2)
	rec.sent.Store(true)
	if run, seq, ok := parseBody(body); !ok || run != "runa" || seq != 2 {
		t.Fatalf("parseBody(%q) = %q %d %v", body, run, seq, ok)
	}
	alice, bob := map[int]struct{}{}, map[int]struct{}{}
	at := rec.start.Add(7 * time.Millisecond)
	tr.observe(body, at, alice)
	tr.observe(body, at, alice) // duplicate for the same recipient
	if missing, expected := tr.pending(); missing != 1 || expected != 2 {
		t.Errorf("pending = %d of %d, want 1 of 2", missing, expected)
	}
	tr.observe(body, at, bob)
	tr.observe("myelin-bench otherrun 2 1", at, bob)
	tr.observe("hello", at, bob)
	if missing, _ := tr.pending(); missing != 0 {
		t.Errorf("missing = %d after both deliveries", missing)
	}
	if tr.delivered.Load() != 2 || tr.duplicates.Load() != 1 || tr.foreign.Load() != 1 {
		t.Errorf("delivered=%d duplicates=%d foreign=%d, want 2/1/1", tr.delivered.Load(), tr.duplicates.Load(), tr.foreign.Load())
	}
	if got := tr.latency.Quantile(1); got != 7*time.Millisecond {
		t.Errorf("latency = %v, want 7ms", got)
	}
}
