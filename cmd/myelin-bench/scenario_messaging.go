package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// messagingConfig: N users spread round-robin over M rooms, each user with
// one /sync long poll, and messages sent at a fixed total rate by the rooms'
// members in turn.
type messagingConfig struct {
	users, rooms  int
	rate          float64
	duration      time.Duration
	drain         time.Duration
	concurrency   int
	senders       int
	syncTimeoutMS int
}

func messagingFlags(fs *flag.FlagSet) func(context.Context, *env) (*result, error) {
	c := &messagingConfig{}
	fs.IntVar(&c.users, "users", 100, "number of users (each runs one /sync long poll)")
	fs.IntVar(&c.rooms, "rooms", 10, "number of rooms; user i joins room i mod rooms")
	fs.Float64Var(&c.rate, "rate", 200, "total target send rate, events per second")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long to send")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "how long to wait for outstanding deliveries after sending stops")
	fs.IntVar(&c.concurrency, "concurrency", 16, "parallel requests during setup")
	fs.IntVar(&c.senders, "senders", 64, "maximum sends in flight during the run")
	fs.IntVar(&c.syncTimeoutMS, "sync-timeout", 30000, "long-poll timeout passed to /sync, in ms")
	return c.run
}

func (c *messagingConfig) validate() error {
	switch {
	case c.rooms < 1:
		return errors.New("--rooms must be at least 1")
	case c.users < 2*c.rooms:
		return fmt.Errorf("--users (%d) must be at least twice --rooms (%d) so every room has a recipient", c.users, c.rooms)
	case c.rate <= 0 || c.duration <= 0:
		return errors.New("--rate and --duration must be positive")
	case c.concurrency < 1 || c.senders < 1:
		return errors.New("--concurrency and --senders must be at least 1")
	case c.drain < 0 || c.syncTimeoutMS < 0:
		return errors.New("--drain and --sync-timeout must not be negative")
	}
	return nil
}

func (c *messagingConfig) run(ctx context.Context, env *env) (*result, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	res := newResult("messaging", env)
	res.param("users", c.users)
	res.param("rooms", c.rooms)
	res.param("rate", c.rate)
	res.param("duration", c.duration)
	res.param("drain", c.drain)
	res.param("senders", c.senders)
	res.param("sync_timeout_ms", c.syncTimeoutMS)
	errs := newErrorCounter(env.log)

	// Setup: users, rooms (user r creates room r), joins, filters and the
	// initial sync that yields each user's since token.
	env.phase("setup")
	accts := make([]*account, c.users)
	members := make([][]int, c.rooms)
	for i := range c.users {
		members[i%c.rooms] = append(members[i%c.rooms], i)
	}
	err := setupStep(ctx, env, "registering users", c.users, c.concurrency, func(ctx context.Context, i int) (err error) {
		accts[i], err = env.hs.register(ctx, env.localpart("m", i), env.password)
		return err
	})
	if err != nil {
		return nil, err
	}
	roomIDs := make([]id.RoomID, c.rooms)
	err = setupStep(ctx, env, "creating rooms", c.rooms, c.concurrency, func(ctx context.Context, r int) (err error) {
		roomIDs[r], err = accts[r].createRoom(ctx, fmt.Sprintf("%s messaging %d", env.g.userPrefix, r))
		return err
	})
	if err != nil {
		return nil, err
	}
	// Consecutive joins target different rooms, so setup concurrency is not
	// serialised on one room's state.
	err = setupStep(ctx, env, "joining rooms", c.users-c.rooms, c.concurrency, func(ctx context.Context, j int) error {
		i := c.rooms + j
		_, err := accts[i].join(ctx, string(roomIDs[i%c.rooms]))
		return err
	})
	if err != nil {
		return nil, err
	}
	filters := make([]string, c.users)
	sinces := make([]string, c.users)
	err = setupStep(ctx, env, "initial syncs", c.users, c.concurrency, func(ctx context.Context, i int) (err error) {
		filters[i] = accts[i].uploadFilter(ctx, env.log)
		sinces[i], err = initialSync(ctx, env, accts[i], filters[i])
		return err
	})
	if err != nil {
		return nil, err
	}

	// Every user long-polls in its own goroutine for the rest of the run.
	// The k-th message is due at k/rate, so rate*duration messages fit in
	// the window.
	capacity := max(1, int(math.Round(c.rate*c.duration.Seconds())))
	t := newTracker(env.g.userPrefix, capacity)
	var st syncLoopStats
	syncCtx, stopSync := context.WithCancel(ctx)
	defer stopSync()
	var loops sync.WaitGroup
	for i := range accts {
		loops.Add(1)
		go func() {
			defer loops.Done()
			syncLoop(syncCtx, env, accts[i], filters[i], sinces[i], c.syncTimeoutMS, t, &st, errs)
		}()
	}
	// Let the long polls reach the server before the first message.
	sleepCtx(ctx, time.Second)

	diskBefore := diskUsage(env)

	env.phase("sending")
	env.log.Info("sending", "rate", c.rate, "duration", c.duration, "users", c.users, "rooms", c.rooms)
	var sendLat histogram
	var sent atomic.Int64
	var lastSent, lastDelivered int64
	stopProgress := startProgress(ctx, env.progress, func(time.Duration) string {
		s, d := sent.Load(), t.delivered.Load()
		line := fmt.Sprintf("sent=%d (%d/s) delivered=%d (%d/s) errors=%d", s, s-lastSent, d, d-lastDelivered, errs.total.Load())
		lastSent, lastDelivered = s, d
		return line
	})
	runStart := time.Now()
	dispatched := runPaced(ctx, c.rate, c.duration, capacity, c.senders, func(ctx context.Context, k int) {
		// Message k goes to room k mod rooms, sent by that room's members
		// in turn.
		r := k % c.rooms
		m := members[r]
		sender := accts[m[(k/c.rooms)%len(m)]]
		rec, body := t.begin(k, len(m)-1)
		_, err := sender.cli.SendMessageEvent(ctx, roomIDs[r], event.EventMessage,
			map[string]any{"msgtype": "m.text", "body": body})
		took := time.Since(rec.start)
		if err != nil {
			if ctx.Err() == nil {
				errs.add("send", err)
			}
			return
		}
		sendLat.Record(took)
		rec.sent.Store(true)
		sent.Add(1)
	})
	sendWindow := time.Since(runStart)

	env.phase("drain")
	env.log.Info("sending stopped, draining", "dispatched", dispatched, "drain", c.drain)
	waited := t.drain(ctx, c.drain)
	stopSync()
	loops.Wait()
	stopProgress()

	missing, expected := t.pending()
	errs.addKind("delivery: missing after drain", missing)
	delivered := t.delivered.Load()

	res.metric("messages dispatched", dispatched, "")
	res.metric("messages sent", sent.Load(), "")
	res.metric("send window", sendWindow.Round(time.Millisecond).String(), "")
	res.metric("send throughput", round2(rate(sent.Load(), sendWindow)), "events/s")
	res.metric("target rate", c.rate, "events/s")
	res.metric("deliveries", delivered, "")
	res.metric("deliveries expected", expected, "")
	res.metric("deliveries missing", missing, "")
	res.metric("delivery throughput", round2(rate(delivered, sendWindow+waited)), "deliveries/s")
	res.metric("drain waited", waited.Round(time.Millisecond).String(), "")
	res.metric("sync polls", st.polls.Load(), "")
	res.metric("limited timelines", t.limited.Load(), "")
	res.metric("duplicate deliveries", t.duplicates.Load(), "")
	if diskBefore >= 0 {
		if after := diskUsage(env); after >= 0 && sent.Load() > 0 {
			res.metric("disk growth", formatBytes(after-diskBefore), "")
			res.metric("disk per message", round2(float64(after-diskBefore)/float64(sent.Load())), "bytes")
		}
	}
	res.latency("send (PUT)", &sendLat)
	res.latency("send→delivery", &t.latency)
	if t.limited.Load() > 0 {
		res.note("the server truncated %d timelines (limited=true) despite the filter's limit; skipped events count as missing", t.limited.Load())
	}
	if scheduled := c.rate * c.duration.Seconds(); float64(dispatched) < 0.98*scheduled && ctx.Err() == nil {
		res.note("dispatched %d of %.0f scheduled messages: all %d senders were busy, the server could not keep up with --rate", dispatched, scheduled, c.senders)
	}
	res.Errors = errs.snapshot()
	return res, nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
