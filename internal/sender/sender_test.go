package sender_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/myelin-chat/myelin/internal/sender"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

const origin = "origin.test"

// sent is one SendTransaction call as the transport saw it.
type sent struct {
	Dest     string
	ID       string
	OriginTS int64
	PDUs     []int // the "n" of each PDU
	EDUs     []string
	Err      error
}

// transport records every call and answers with fail's verdict (nil fail,
// or a nil verdict, means 200). It also checks that no destination ever has
// two transactions in flight.
type transport struct {
	mu       sync.Mutex
	calls    []sent
	inflight map[string]int
	overlap  []string
	// fail decides the answer to the attempt-th call (from 1) for dest.
	fail func(ctx context.Context, dest string, attempt int, s sent) error
}

func newTransport(fail func(ctx context.Context, dest string, attempt int, s sent) error) *transport {
	return &transport{inflight: make(map[string]int), fail: fail}
}

func (tr *transport) SendTransaction(ctx context.Context, dest, txnID string, originTS int64, pdus, edus []json.RawMessage) error {
	s := sent{Dest: dest, ID: txnID, OriginTS: originTS}
	if pdus == nil || edus == nil {
		return errors.New("nil list handed to the transport")
	}
	for _, p := range pdus {
		var v struct{ N int }
		if err := json.Unmarshal(p, &v); err != nil {
			return err
		}
		s.PDUs = append(s.PDUs, v.N)
	}
	for _, e := range edus {
		s.EDUs = append(s.EDUs, string(e))
	}
	tr.mu.Lock()
	tr.inflight[dest]++
	if tr.inflight[dest] > 1 {
		tr.overlap = append(tr.overlap, dest)
	}
	attempt := 1
	for _, c := range tr.calls {
		if c.Dest == dest {
			attempt++
		}
	}
	tr.mu.Unlock()

	var err error
	if tr.fail != nil {
		err = tr.fail(ctx, dest, attempt, s)
	}

	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.inflight[dest]--
	s.Err = err
	tr.calls = append(tr.calls, s)
	return err
}

// to returns the calls made to dest so far; ok selects only successful ones.
func (tr *transport) to(dest string, ok bool) []sent {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []sent
	for _, c := range tr.calls {
		if c.Dest == dest && (!ok || c.Err == nil) {
			out = append(out, c)
		}
	}
	return out
}

// delivered returns the PDUs and EDUs dest has accepted, in order.
func (tr *transport) delivered(dest string) (pdus []int, edus []string) {
	for _, c := range tr.to(dest, true) {
		pdus = append(pdus, c.PDUs...)
		edus = append(edus, c.EDUs...)
	}
	return pdus, edus
}

func (tr *transport) checkNoOverlap(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.overlap) > 0 {
		t.Errorf("two transactions in flight at once to %v", tr.overlap)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor polls cond until it holds or 20 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func pdu(n int) []byte { return fmt.Appendf(nil, `{"n":%d,"room_id":"!r:origin.test"}`, n) }

func edu(n int) json.RawMessage { return fmt.Appendf(nil, `{"n":%d}`, n) }

// eduWire is the EDU object enqueueEDU(n) produces on the wire.
func eduWire(typ string, n int) string {
	return fmt.Sprintf(`{"edu_type":%q,"content":{"n":%d}}`, typ, n)
}

func enqueuePDU(t *testing.T, db *storage.DB, s *sender.Sender, dests []string, n int) {
	t.Helper()
	ctx := context.Background()
	if err := db.WriteTx(ctx, func(tx *storage.Tx) error { return s.EnqueuePDU(ctx, tx, dests, pdu(n)) }); err != nil {
		t.Fatalf("EnqueuePDU %d: %v", n, err)
	}
}

func enqueueEDU(t *testing.T, s *sender.Sender, dests []string, typ string, n int) {
	t.Helper()
	if err := s.EnqueueEDU(context.Background(), dests, typ, edu(n)); err != nil {
		t.Fatalf("EnqueueEDU %d: %v", n, err)
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func eduSeq(typ string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, eduWire(typ, i))
	}
	return out
}

// count returns the rows in a table.
func count(t *testing.T, db *storage.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkQueueEmpty checks that nothing is left behind in the database.
func checkQueueEmpty(t *testing.T, db *storage.DB) {
	t.Helper()
	for _, table := range []string{"sender_queue", "sender_payloads", "sender_txns"} {
		if n := count(t, db, table); n != 0 {
			t.Errorf("%s has %d rows after delivery, want 0", table, n)
		}
	}
}

// start starts s and closes it at the end of the test, checking that every
// worker has gone.
func start(t *testing.T, s *sender.Sender) {
	t.Helper()
	s.Start(context.Background())
	t.Cleanup(func() {
		s.Close()
		if st := s.Stats(); st.ActiveDestinations != 0 {
			t.Errorf("%d workers left after Close", st.ActiveDestinations)
		}
	})
}

func TestBatchLimits(t *testing.T) {
	type batch struct{ pdus, edus int }
	tests := []struct {
		name       string
		pdus, edus int
		want       []batch
	}{
		{"120 PDUs", 120, 0, []batch{{50, 0}, {50, 0}, {20, 0}}},
		{"201 EDUs", 0, 201, []batch{{0, 100}, {0, 100}, {0, 1}}},
		{"both", 120, 150, []batch{{50, 100}, {50, 50}, {20, 0}}},
		{"exactly full", 50, 100, []batch{{50, 100}}},
		{"one over", 51, 0, []batch{{50, 0}, {1, 0}}},
		{"one each", 1, 1, []batch{{1, 1}}},
	}
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		tr := newTransport(nil)
		s := sender.New(db, origin, tr, quiet())
		// Everything is queued before Start, so the batches are fixed.
		ctx := context.Background()
		for i, tc := range tests {
			dest := fmt.Sprintf("d%d.test", i)
			// One write transaction may queue many PDUs, in call order.
			err := db.WriteTx(ctx, func(tx *storage.Tx) error {
				for n := range tc.pdus {
					if err := s.EnqueuePDU(ctx, tx, []string{dest, origin}, pdu(n)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for n := range tc.edus {
				enqueueEDU(t, s, []string{dest, origin}, "m.receipt", n)
			}
		}
		start(t, s)
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				dest := fmt.Sprintf("d%d.test", i)
				waitFor(t, "delivery to "+dest, func() bool {
					p, e := tr.delivered(dest)
					return len(p) == tc.pdus && len(e) == tc.edus
				})
				var got []batch
				for _, c := range tr.to(dest, false) {
					got = append(got, batch{len(c.PDUs), len(c.EDUs)})
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("batches = %v, want %v", got, tc.want)
				}
				p, e := tr.delivered(dest)
				if !slices.Equal(p, seq(0, tc.pdus)) {
					t.Errorf("PDUs delivered as %v, want 0..%d in order", p, tc.pdus-1)
				}
				if !slices.Equal(e, eduSeq("m.receipt", 0, tc.edus)) {
					t.Errorf("EDUs delivered out of order or changed: %v", e)
				}
			})
		}
		if n := len(tr.to(origin, false)); n != 0 {
			t.Errorf("%d transactions sent to ourselves", n)
		}
		tr.checkNoOverlap(t)
		s.Close()
		checkQueueEmpty(t, db)
		st := s.Stats()
		if st.QueuedPDUs != 342 || st.QueuedEDUs != 452 || st.SentPDUs != 342 || st.SentEDUs != 452 || st.SentTransactions != 13 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestOrderingWhileSending(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		dests := []string{"a.test", "b.test", "c.test"}
		tr := newTransport(nil)
		s := sender.New(db, origin, tr, quiet())
		start(t, s)
		const n = 150
		// Producers run while the workers send, so batches form from
		// whatever has been committed so far.
		var wg sync.WaitGroup
		ctx := context.Background()
		wg.Go(func() {
			for i := range n {
				if err := db.WriteTx(ctx, func(tx *storage.Tx) error { return s.EnqueuePDU(ctx, tx, dests, pdu(i)) }); err != nil {
					t.Errorf("EnqueuePDU %d: %v", i, err)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range n {
				if err := s.EnqueueEDU(ctx, dests, "m.direct_to_device", edu(i)); err != nil {
					t.Errorf("EnqueueEDU %d: %v", i, err)
					return
				}
			}
		})
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, d := range dests {
			waitFor(t, "delivery to "+d, func() bool {
				p, e := tr.delivered(d)
				return len(p) == n && len(e) == n
			})
			p, e := tr.delivered(d)
			if !slices.Equal(p, seq(0, n)) {
				t.Errorf("%s: PDUs out of order: %v", d, p)
			}
			if !slices.Equal(e, eduSeq("m.direct_to_device", 0, n)) {
				t.Errorf("%s: EDUs out of order", d)
			}
			for _, c := range tr.to(d, false) {
				if len(c.PDUs) > sender.MaxPDUsPerTxn || len(c.EDUs) > sender.MaxEDUsPerTxn {
					t.Errorf("%s: transaction %s has %d PDUs, %d EDUs", d, c.ID, len(c.PDUs), len(c.EDUs))
				}
			}
		}
		tr.checkNoOverlap(t)
	})
}

// outage makes a destination fail while down is set, with a network-style
// error (no HTTP status).
type outage struct{ down atomic.Bool }

func (o *outage) fail(context.Context, string, int, sent) error {
	if o.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}

func TestBackoffThenCatchUp(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		const dest = "b.test"
		var o outage
		o.down.Store(true)
		tr := newTransport(o.fail)
		s := sender.New(db, origin, tr, quiet(), sender.WithBackoff(time.Millisecond, 20*time.Millisecond))
		start(t, s)
		for i := range 10 {
			enqueuePDU(t, db, s, []string{dest}, i)
		}
		waitFor(t, "three failed attempts", func() bool { return len(tr.to(dest, false)) >= 3 })
		// More arrives during the outage; it must queue behind.
		for i := 10; i < 130; i++ {
			enqueuePDU(t, db, s, []string{dest}, i)
		}
		enqueueEDU(t, s, []string{dest}, "m.receipt", 0)
		o.down.Store(false)
		waitFor(t, "catch-up", func() bool {
			p, e := tr.delivered(dest)
			return len(p) == 130 && len(e) == 1
		})
		calls := tr.to(dest, false)
		first := calls[0]
		if len(first.PDUs) == 0 || first.Err == nil {
			t.Fatalf("first attempt = %+v, want a failed one", first)
		}
		// Every retry before the first success repeats the first batch.
		var i int
		for i = 0; calls[i].Err != nil; i++ {
			if calls[i].ID != first.ID || !slices.Equal(calls[i].PDUs, first.PDUs) || calls[i].OriginTS != first.OriginTS {
				t.Fatalf("retry %d = %+v, want the same transaction as %+v", i, calls[i], first)
			}
		}
		if calls[i].ID != first.ID || !slices.Equal(calls[i].PDUs, first.PDUs) {
			t.Errorf("first success %s, want the retried transaction %s", calls[i].ID, first.ID)
		}
		seen := map[string]bool{}
		for _, c := range tr.to(dest, true) {
			if seen[c.ID] {
				t.Errorf("transaction ID %s delivered twice", c.ID)
			}
			seen[c.ID] = true
		}
		if p, _ := tr.delivered(dest); !slices.Equal(p, seq(0, 130)) {
			t.Errorf("PDUs delivered as %v, want 0..129 in order", p)
		}
		if st := s.Stats(); st.FailedAttempts < 3 || st.SentPDUs != 130 || st.BackingOff != 0 {
			t.Errorf("stats = %+v", st)
		}
		tr.checkNoOverlap(t)
	})
}

func TestWakeCutsBackoff(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		const dest = "b.test"
		var o outage
		o.down.Store(true)
		tr := newTransport(o.fail)
		// Without Wake the retry would come an hour later.
		s := sender.New(db, origin, tr, quiet(), sender.WithBackoff(time.Hour, time.Hour))
		start(t, s)
		enqueuePDU(t, db, s, []string{dest}, 0)
		waitFor(t, "the failed attempt", func() bool { return len(tr.to(dest, false)) == 1 })
		// Queueing more does not cut the backoff short...
		enqueuePDU(t, db, s, []string{dest}, 1)
		o.down.Store(false)
		// ...but the destination showing up does.
		s.Wake(dest)
		waitFor(t, "delivery after Wake", func() bool { p, _ := tr.delivered(dest); return len(p) == 2 })
		if p, _ := tr.delivered(dest); !slices.Equal(p, []int{0, 1}) {
			t.Errorf("delivered %v, want [0 1]", p)
		}
	})
}

func TestIndependentDestinations(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		// slow.test never answers: its send blocks until cancelled.
		tr := newTransport(func(ctx context.Context, dest string, _ int, _ sent) error {
			if dest == "slow.test" {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		s := sender.New(db, origin, tr, quiet())
		s.Start(context.Background())
		both := []string{"slow.test", "fast.test"}
		for i := range 120 {
			enqueuePDU(t, db, s, both, i)
		}
		enqueueEDU(t, s, both, "m.typing", 0)
		waitFor(t, "delivery to fast.test", func() bool {
			p, e := tr.delivered("fast.test")
			return len(p) == 120 && len(e) == 1
		})
		// Close cancels the hanging send and returns.
		s.Close()
		if st := s.Stats(); st.ActiveDestinations != 0 {
			t.Errorf("%d workers left after Close", st.ActiveDestinations)
		}
		if n := len(tr.to("slow.test", true)); n != 0 {
			t.Errorf("slow.test accepted %d transactions", n)
		}
		// slow.test's entries are all still queued.
		if n := count(t, db, "sender_queue"); n != 121 {
			t.Errorf("sender_queue has %d rows, want 121 for slow.test", n)
		}
		// The cancelled transaction may have reached slow.test: after a
		// restart it is sent again under the same ID.
		cancelled := tr.to("slow.test", false)
		if len(cancelled) != 1 {
			t.Fatalf("slow.test saw %d attempts, want 1", len(cancelled))
		}
		up := newTransport(nil)
		s2 := sender.New(db, origin, up, quiet())
		start(t, s2)
		waitFor(t, "delivery to slow.test after restart", func() bool {
			p, e := up.delivered("slow.test")
			return len(p) == 120 && len(e) == 1
		})
		if got := up.to("slow.test", true)[0]; got.ID != cancelled[0].ID || !slices.Equal(got.PDUs, cancelled[0].PDUs) {
			t.Errorf("after restart slow.test got %s %v first, want the cancelled %s %v", got.ID, got.PDUs, cancelled[0].ID, cancelled[0].PDUs)
		}
	})
}

func TestRestartDurability(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		down := newTransport(func(context.Context, string, int, sent) error { return errors.New("connection refused") })
		s1 := sender.New(db, origin, down, quiet(), sender.WithBackoff(time.Millisecond, 5*time.Millisecond))
		s1.Start(context.Background())
		for i := range 70 {
			enqueuePDU(t, db, s1, []string{"b.test"}, i)
		}
		for i := range 30 {
			enqueueEDU(t, s1, []string{"b.test", "c.test"}, "m.device_list_update", i)
		}
		for i := 100; i < 105; i++ {
			enqueuePDU(t, db, s1, []string{"c.test"}, i)
		}
		waitFor(t, "failed attempts to both", func() bool {
			return len(down.to("b.test", false)) >= 2 && len(down.to("c.test", false)) >= 1
		})
		s1.Close()
		failedB := down.to("b.test", false)[0]
		failedC := down.to("c.test", false)[0]

		up := newTransport(nil)
		s2 := sender.New(db, origin, up, quiet())
		start(t, s2)
		waitFor(t, "delivery after restart", func() bool {
			pb, eb := up.delivered("b.test")
			pc, ec := up.delivered("c.test")
			return len(pb) == 70 && len(eb) == 30 && len(pc) == 5 && len(ec) == 30
		})
		for _, c := range []struct {
			failed sent
			dest   string
		}{{failedB, "b.test"}, {failedC, "c.test"}} {
			got, want := up.to(c.dest, true)[0], c.failed
			want.Err = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: first transaction after restart = %+v, want the retried %+v", c.dest, got, c.failed)
			}
		}
		// Exactly the queued set arrives, once each.
		pb, eb := up.delivered("b.test")
		pc, ec := up.delivered("c.test")
		if !slices.Equal(pb, seq(0, 70)) || !slices.Equal(pc, seq(100, 105)) {
			t.Errorf("PDUs after restart: b %v, c %v", pb, pc)
		}
		if want := eduSeq("m.device_list_update", 0, 30); !slices.Equal(eb, want) || !slices.Equal(ec, want) {
			t.Errorf("EDUs after restart: b %v, c %v", eb, ec)
		}
		s2.Close()
		checkQueueEmpty(t, db)
	})
}

func TestRolledBackEnqueue(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		tr := newTransport(nil)
		s := sender.New(db, origin, tr, quiet())
		start(t, s)
		errAbort := errors.New("abort")
		err := db.WriteTx(ctx, func(tx *storage.Tx) error {
			if err := s.EnqueuePDU(ctx, tx, []string{"b.test"}, pdu(0)); err != nil {
				return err
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("WriteTx = %v, want the abort", err)
		}
		for _, table := range []string{"sender_queue", "sender_payloads"} {
			if n := count(t, db, table); n != 0 {
				t.Errorf("%s has %d rows after a rollback", table, n)
			}
		}
		if st := s.Stats(); st.QueuedPDUs != 0 {
			t.Errorf("QueuedPDUs = %d after a rollback, want 0", st.QueuedPDUs)
		}
		// A committed PDU queued after it is the only one delivered.
		enqueuePDU(t, db, s, []string{"b.test"}, 1)
		waitFor(t, "delivery", func() bool { return len(tr.to("b.test", true)) == 1 })
		s.Close()
		if p, _ := tr.delivered("b.test"); !slices.Equal(p, []int{1}) {
			t.Errorf("delivered %v, want [1]", p)
		}
	})
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		dropped bool // the first batch is given up rather than delivered
	}{
		{"400 dropped", 400, true},
		{"401 dropped", 401, true},
		{"403 dropped", 403, true},
		{"413 dropped", 413, true},
		{"404 retried", 404, false},
		{"429 retried", 429, false},
		{"500 retried", 500, false},
		{"502 retried", 502, false},
	}
	const maxRejections = 3
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		status := map[string]int{}
		for i, tc := range tests {
			status[fmt.Sprintf("d%d.test", i)] = tc.status
		}
		// Each destination answers its status to the first batch (the one
		// holding PDU 0) for 5 attempts, then 200; later batches succeed.
		tr := newTransport(func(_ context.Context, dest string, attempt int, s sent) error {
			if slices.Contains(s.PDUs, 0) && attempt <= maxRejections+2 {
				return &sender.StatusError{Status: status[dest], Err: errors.New("M_FORBIDDEN")}
			}
			return nil
		})
		s := sender.New(db, origin, tr, quiet(),
			sender.WithBackoff(time.Millisecond, 5*time.Millisecond), sender.WithMaxRejections(maxRejections))
		for i := range tests {
			for n := range 60 {
				enqueuePDU(t, db, s, []string{fmt.Sprintf("d%d.test", i)}, n)
			}
		}
		start(t, s)
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				dest := fmt.Sprintf("d%d.test", i)
				// 5 refusals, the first batch, the second.
				want, wantAttempts := seq(0, 60), maxRejections+4
				if tc.dropped {
					// maxRejections refusals, the second batch.
					want, wantAttempts = seq(50, 60), maxRejections+1
				}
				waitFor(t, "delivery to "+dest, func() bool { p, _ := tr.delivered(dest); return slices.Equal(p, want) })
				if n := len(tr.to(dest, false)); n != wantAttempts {
					t.Errorf("%d attempts, want %d", n, wantAttempts)
				}
			})
		}
		s.Close()
		checkQueueEmpty(t, db)
		if st := s.Stats(); st.DroppedPDUs != 4*50 {
			t.Errorf("DroppedPDUs = %d, want 200", st.DroppedPDUs)
		}
	})
}

func TestEphemeralEDUsExpire(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		var now atomic.Int64
		now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
		clock := func() time.Time { return time.UnixMilli(now.Load()) }
		tr := newTransport(nil)
		s := sender.New(db, origin, tr, quiet(), sender.WithClock(clock))
		dest := []string{"b.test"}
		enqueueEDU(t, s, dest, "m.typing", 0)
		enqueueEDU(t, s, dest, "m.presence", 1)
		enqueueEDU(t, s, dest, "m.receipt", 2)
		enqueueEDU(t, s, dest, "m.direct_to_device", 3)
		now.Add((2 * time.Minute).Milliseconds()) // an outage
		enqueueEDU(t, s, dest, "m.typing", 4)
		start(t, s)
		want := []string{eduWire("m.presence", 1), eduWire("m.receipt", 2), eduWire("m.direct_to_device", 3), eduWire("m.typing", 4)}
		waitFor(t, "delivery", func() bool { _, e := tr.delivered("b.test"); return len(e) == len(want) })
		if _, e := tr.delivered("b.test"); !slices.Equal(e, want) {
			t.Errorf("EDUs delivered %v, want %v", e, want)
		}
		if c := tr.to("b.test", true)[0]; c.OriginTS != now.Load() {
			t.Errorf("origin_server_ts = %d, want the clock's %d", c.OriginTS, now.Load())
		}
		s.Close()
		checkQueueEmpty(t, db)
		if st := s.Stats(); st.DroppedEDUs != 1 {
			t.Errorf("DroppedEDUs = %d, want 1", st.DroppedEDUs)
		}
	})
}

func TestBadInput(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := sender.New(db, origin, newTransport(nil), quiet())
		pduTests := []struct {
			name  string
			dests []string
			body  string
		}{
			{"not JSON", []string{"b.test"}, `{"n":`},
			{"not an object", []string{"b.test"}, `[1]`},
			{"empty", []string{"b.test"}, ``},
			{"empty server name", []string{"b.test", ""}, `{}`},
		}
		for _, tc := range pduTests {
			t.Run("PDU "+tc.name, func(t *testing.T) {
				err := db.WriteTx(ctx, func(tx *storage.Tx) error { return s.EnqueuePDU(ctx, tx, tc.dests, []byte(tc.body)) })
				if err == nil {
					t.Error("EnqueuePDU accepted it")
				}
			})
		}
		eduTests := []struct {
			name, typ, content string
		}{
			{"bad content", "m.typing", `{"a":`},
			{"empty type", "", `{}`},
		}
		for _, tc := range eduTests {
			t.Run("EDU "+tc.name, func(t *testing.T) {
				if err := s.EnqueueEDU(ctx, []string{"b.test"}, tc.typ, json.RawMessage(tc.content)); err == nil {
					t.Error("EnqueueEDU accepted it")
				}
			})
		}
		// Nothing to do is not an error.
		if err := s.EnqueueEDU(ctx, []string{origin}, "m.typing", edu(0)); err != nil {
			t.Errorf("EnqueueEDU to ourselves only: %v", err)
		}
		if n := count(t, db, "sender_payloads"); n != 0 {
			t.Errorf("sender_payloads has %d rows after rejected input", n)
		}
	})
}

func TestManyDestinationsShareCommits(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		var dests []string
		for i := range 40 {
			dests = append(dests, fmt.Sprintf("d%d.test", i))
		}
		tr := newTransport(nil)
		s := sender.New(db, origin, tr, quiet())
		start(t, s)
		// Each payload is shared by every destination and may be deleted
		// only when the last one has it; removals commit in groups.
		for i := range 60 {
			enqueuePDU(t, db, s, dests, i)
		}
		waitFor(t, "delivery everywhere", func() bool { return s.Stats().SentPDUs == 60*40 })
		for _, d := range dests {
			if p, _ := tr.delivered(d); !slices.Equal(p, seq(0, 60)) {
				t.Errorf("%s got %v, want 0..59 in order", d, p)
			}
		}
		s.Close()
		checkQueueEmpty(t, db)
		tr.checkNoOverlap(t)
	})
}
