package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Messages sent by the bench carry "myelin-bench <run> <seq> <unix-nanos>" as
// their body: the run ID keeps a run from counting another run's traffic in
// a shared room, seq indexes the tracker, and the wall-clock send time makes
// the event self-describing for anyone looking at the room afterwards.
const bodyPrefix = "myelin-bench "

// msgRecord is the bench's knowledge about one message it sent.
type msgRecord struct {
	start     time.Time // just before the PUT; carries the monotonic clock
	expected  int32     // recipients that should see it (everyone but the sender)
	sent      atomic.Bool
	delivered atomic.Int32
}

// tracker matches events seen in /sync responses to the messages that were
// sent, recording send-to-delivery latency for each (message, recipient).
type tracker struct {
	runID string
	recs  []atomic.Pointer[msgRecord]

	latency    histogram
	delivered  atomic.Int64 // (message, recipient) pairs seen
	duplicates atomic.Int64 // same pair seen more than once
	foreign    atomic.Int64 // bench-formatted bodies that did not match this run
	limited    atomic.Int64 // timelines the server truncated ("limited": true)
}

func newTracker(runID string, capacity int) *tracker {
	return &tracker{runID: runID, recs: make([]atomic.Pointer[msgRecord], capacity)}
}

// begin publishes the record for message seq and returns the body to send.
// It must run before the PUT: the event can reach a /sync before the PUT
// returns.
func (t *tracker) begin(seq int, expected int) (*msgRecord, string) {
	rec := &msgRecord{expected: int32(expected)}
	rec.start = time.Now()
	t.recs[seq].Store(rec)
	body := fmt.Sprintf("%s%s %d %d", bodyPrefix, t.runID, seq, rec.start.UnixNano())
	return rec, body
}

// parseBody extracts run ID and sequence number from a bench message body.
func parseBody(body string) (run string, seq int, ok bool) {
	rest, found := strings.CutPrefix(body, bodyPrefix)
	if !found {
		return "", 0, false
	}
	f := strings.Fields(rest)
	if len(f) != 3 {
		return "", 0, false
	}
	seq, err := strconv.Atoi(f[1])
	if err != nil || seq < 0 {
		return "", 0, false
	}
	return f[0], seq, true
}

// observe records the delivery of one message body to one recipient. seen is
// that recipient's private set (only its own sync goroutine touches it).
func (t *tracker) observe(body string, arrived time.Time, seen map[int]struct{}) {
	run, seq, ok := parseBody(body)
	if !ok {
		return
	}
	if run != t.runID || seq >= len(t.recs) {
		t.foreign.Add(1)
		return
	}
	rec := t.recs[seq].Load()
	if rec == nil {
		t.foreign.Add(1)
		return
	}
	if _, dup := seen[seq]; dup {
		t.duplicates.Add(1)
		return
	}
	seen[seq] = struct{}{}
	rec.delivered.Add(1)
	t.delivered.Add(1)
	t.latency.Record(arrived.Sub(rec.start))
}

// pending counts deliveries still owed for messages whose PUT succeeded.
func (t *tracker) pending() (missing int64, expected int64) {
	for i := range t.recs {
		rec := t.recs[i].Load()
		if rec == nil || !rec.sent.Load() {
			continue
		}
		expected += int64(rec.expected)
		if d := int64(rec.expected - rec.delivered.Load()); d > 0 {
			missing += d
		}
	}
	return missing, expected
}

// drain waits until every sent message has reached every recipient or the
// drain period ends, whichever is first.
func (t *tracker) drain(ctx context.Context, d time.Duration) (waited time.Duration) {
	start := time.Now()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if missing, _ := t.pending(); missing == 0 {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-deadline.C:
			return time.Since(start)
		case <-tick.C:
		}
	}
}

// syncPage is the part of a /sync response the bench reads. Decoding into
// this instead of mautrix's full event types keeps the bench's own CPU use
// low, which matters when it shares two cores with the server.
type syncPage struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					Type    string `json:"type"`
					Sender  string `json:"sender"`
					Content struct {
						Body string `json:"body"`
					} `json:"content"`
				} `json:"events"`
				Limited bool `json:"limited"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// syncLoopStats is shared by all sync loops of a run.
type syncLoopStats struct {
	polls  atomic.Int64 // completed long polls
	active atomic.Int64 // loops currently running
}

// syncLoop long-polls /sync for one device until ctx ends, feeding every
// message event from another user into the tracker. since must come from an
// earlier sync so the loop only sees new events.
func syncLoop(ctx context.Context, env *env, a *account, filter, since string, timeoutMS int, t *tracker, st *syncLoopStats, errs *errorCounter) {
	st.active.Add(1)
	defer st.active.Add(-1)
	seen := make(map[int]struct{})
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		var page syncPage
		arrived, _, err := a.syncOnce(ctx, env.hs, since, filter, timeoutMS, &page)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			errs.add("sync", err)
			// Back off so a failing server is not hammered by thousands
			// of loops retrying in lockstep.
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		st.polls.Add(1)
		if page.NextBatch != "" {
			since = page.NextBatch
		}
		for _, room := range page.Rooms.Join {
			if room.Timeline.Limited {
				t.limited.Add(1)
			}
			for _, ev := range room.Timeline.Events {
				if ev.Type != "m.room.message" || ev.Sender == string(a.UserID) {
					continue
				}
				t.observe(ev.Content.Body, arrived, seen)
			}
		}
	}
}

// initialSync fetches the first since token for a device, with the bench
// filter so the response stays small.
func initialSync(ctx context.Context, env *env, a *account, filter string) (string, error) {
	var page syncPage
	_, _, err := a.syncOnce(ctx, env.hs, "", filter, 0, &page)
	if err != nil {
		return "", err
	}
	if page.NextBatch == "" {
		return "", fmt.Errorf("initial sync for %s returned no next_batch", a.UserID)
	}
	return page.NextBatch, nil
}
