package sender

import (
	"context"
	"errors"
	"time"
)

// worker delivers one destination's queue, one transaction at a time. It
// runs while the destination has queued entries and is removed from
// Sender.workers, under Sender.mu, in the same step as it decides to exit.
type worker struct {
	s    *Sender
	dest string
	// wake holds a token when entries were queued since the worker last
	// began reading its queue. Sent to only under Sender.mu.
	wake chan struct{}
	// retry holds a token when Wake was called since the last attempt
	// began; it ends a backoff early.
	retry chan struct{}
}

func (w *worker) run(ctx context.Context) {
	s := w.s
	defer s.wg.Done()
	log := s.log.With("server", w.dest)
	limits := batchLimits{pdus: MaxPDUsPerTxn, edus: MaxEDUsPerTxn, expired: w.expired}
	var cur *txn
	failures, rejections := 0, 0
	for {
		if ctx.Err() != nil {
			w.exit()
			return
		}
		if cur == nil {
			// Whatever was queued before this point is read below.
			select {
			case <-w.wake:
			default:
			}
			t, expired, err := nextTxn(ctx, s.db, w.dest, limits, s.now())
			if expired > 0 {
				s.droppedEDUs.Add(int64(expired))
				log.Debug("dropped expired ephemeral EDUs", "count", expired)
			}
			if err != nil {
				if ctx.Err() != nil {
					w.exit()
					return
				}
				failures++
				log.Error("reading federation queue", "err", err)
				if !w.backoff(ctx, failures, 0) {
					w.exit()
					return
				}
				continue
			}
			if t == nil {
				// After deleting expired EDUs the queue may hold more.
				if expired == 0 && w.idle() {
					return
				}
				continue
			}
			cur, rejections = t, 0
		}

		// A Wake before this attempt is answered by this attempt.
		select {
		case <-w.retry:
		default:
		}
		err := s.transport.SendTransaction(ctx, w.dest, cur.id, cur.originTS, nonNil(cur.pdus), nonNil(cur.edus))
		if err == nil {
			s.sentTxns.Add(1)
			s.sentPDUs.Add(int64(len(cur.pdus)))
			s.sentEDUs.Add(int64(len(cur.edus)))
			if failures > 0 {
				log.Info("destination reachable again, catching up", "txn_id", cur.id, "failed_attempts", failures)
			}
			failures = 0
			if err := w.finish(ctx, cur); err != nil {
				// cur stays: it is resent under the same ID, which the
				// destination deduplicates, and finished then.
				if ctx.Err() != nil {
					w.exit()
					return
				}
				failures++
				log.Error("removing a delivered transaction from the queue", "txn_id", cur.id, "err", err)
				if !w.backoff(ctx, failures, 0) {
					w.exit()
					return
				}
				continue
			}
			cur = nil
			continue
		}
		// The destination may have processed it all the same: from now on
		// the batch and its ID must survive a restart.
		if !cur.persisted {
			if err := w.persist(ctx, cur); err != nil {
				log.Error("recording a transaction in flight", "txn_id", cur.id, "err", err)
			}
		}
		if ctx.Err() != nil {
			w.exit() // Close cancelled the send; the transaction stays queued
			return
		}

		s.failedAttempts.Add(1)
		failures++
		var retryAfter time.Duration
		var se *StatusError
		if errors.As(err, &se) && se.refused() {
			rejections++
		} else {
			rejections = 0
		}
		if se != nil {
			retryAfter = se.RetryAfter
		}
		if rejections >= s.maxRejections {
			log.Error("dropping a transaction the destination keeps refusing", "txn_id", cur.id,
				"pdus", len(cur.pdus), "edus", len(cur.edus), "attempts", rejections, "err", err)
			if err := w.finish(ctx, cur); err != nil {
				log.Error("dropping a refused transaction", "txn_id", cur.id, "err", err)
			} else {
				s.droppedPDUs.Add(int64(len(cur.pdus)))
				s.droppedEDUs.Add(int64(len(cur.edus)))
				cur = nil
			}
		} else {
			log.Warn("sending transaction failed", "txn_id", cur.id, "failures", failures, "err", err)
		}
		// Failures are not reset by a drop: a destination refusing
		// everything stays at a long delay.
		if !w.backoff(ctx, failures, retryAfter) {
			w.exit()
			return
		}
	}
}

// finishTimeout bounds recording a transaction in flight or removing a
// finished one.
const finishTimeout = 30 * time.Second

// finish removes a transaction the destination has answered from the
// queue. Close does not interrupt it: the answer is in, and recording it
// spares the destination a resend.
func (w *worker) finish(ctx context.Context, t *txn) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	return w.s.finisher.finish(ctx, w.dest, t)
}

// persist records a transaction in flight. Like finish, Close does not
// interrupt it.
func (w *worker) persist(ctx context.Context, t *txn) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	return persistTxn(ctx, w.s.db, w.dest, t)
}

// expired reports whether an EDU is ephemeral and too old to send.
func (w *worker) expired(eduType string, created time.Time) bool {
	var ttl time.Duration
	switch eduType {
	case "m.typing":
		ttl = time.Minute
	case "m.presence":
		ttl = 15 * time.Minute
	default:
		return false
	}
	return w.s.now().Sub(created) > ttl
}

// backoff waits out the delay after the given number of consecutive
// failures, or less if Wake is called. It returns false if ctx ended.
func (w *worker) backoff(ctx context.Context, failures int, retryAfter time.Duration) bool {
	s := w.s
	d := min(max(backoffDelay(s.minBackoff, s.maxBackoff, failures), retryAfter), s.maxBackoff)
	s.backingOff.Add(1)
	defer s.backingOff.Add(-1)
	return sleep(ctx, d, w.retry)
}

// backoffDelay is minDelay doubled for each failure after the first,
// capped at maxDelay.
func backoffDelay(minDelay, maxDelay time.Duration, failures int) time.Duration {
	d := minDelay
	for i := 1; i < failures && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

// sleep waits for d, a token on early, or the end of ctx; it returns false
// only in the last case.
func sleep(ctx context.Context, d time.Duration, early <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-early:
		return true
	case <-ctx.Done():
		return false
	}
}

// idle ends the worker if nothing was queued since it last read its queue.
// Deciding under Sender.mu, where kick also runs, means an entry is either
// seen by this worker or starts a new one.
func (w *worker) idle() bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if len(w.wake) > 0 {
		return false
	}
	delete(w.s.workers, w.dest)
	return true
}

// exit removes the worker after its context ended.
func (w *worker) exit() {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.workers[w.dest] == w {
		delete(w.s.workers, w.dest)
	}
}

// nonNil returns l, or an empty list for nil, so that the Transport always
// sees a JSON array.
func nonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}
