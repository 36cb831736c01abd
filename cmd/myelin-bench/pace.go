package main

import (
	"context"
	"sync"
	"time"
)

// runPaced dispatches fn(k) for k = 0, 1, 2, ... at perSecond calls per
// second, spread over at most workers goroutines, until total calls were
// dispatched, d has passed, or ctx ends; it waits for calls in flight and
// returns how many were dispatched.
//
// The schedule is open-loop (the k-th call is due at k/perSecond) so a slow
// server does not quietly lower the offered load; but the number of calls in
// flight is bounded by workers, and when all are busy dispatch waits, so the
// achieved rate reported by the caller shows the shortfall.
func runPaced(ctx context.Context, perSecond float64, d time.Duration, total, workers int, fn func(ctx context.Context, k int)) int {
	if perSecond <= 0 || total <= 0 {
		return 0
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				fn(ctx, k)
			}
		}()
	}

	start := time.Now()
	end := time.NewTimer(d)
	defer end.Stop()
	wait := time.NewTimer(0)
	defer wait.Stop()
	k := 0
dispatch:
	for k < total {
		due := min(total, int(time.Since(start).Seconds()*perSecond)+1)
		for k < due {
			select {
			case jobs <- k:
				k++
			case <-ctx.Done():
				break dispatch
			case <-end.C:
				break dispatch
			}
		}
		next := start.Add(time.Duration(float64(k) / perSecond * float64(time.Second)))
		wait.Reset(max(0, time.Until(next)))
		select {
		case <-wait.C:
		case <-ctx.Done():
			break dispatch
		case <-end.C:
			break dispatch
		}
	}
	close(jobs)
	wg.Wait()
	return k
}
