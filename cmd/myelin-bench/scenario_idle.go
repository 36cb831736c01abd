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
)

// idleConfig: many /sync long polls that mostly wait, spread over fewer users
// with one device (login) per poll, all in one room; a single sender posts
// now and then and every poll should wake up.
//
// Separate devices rather than one access token shared by several polls keep
// the load honest against servers that coalesce identical /sync requests
// (Synapse caches responses per user, token and since).
type idleConfig struct {
	syncers       int
	users         int
	rate          float64
	duration      time.Duration
	settle        time.Duration
	drain         time.Duration
	concurrency   int
	syncTimeoutMS int
}

func idleFlags(fs *flag.FlagSet) func(context.Context, *env) (*result, error) {
	c := &idleConfig{}
	fs.IntVar(&c.syncers, "syncers", 2000, "number of concurrent /sync long polls (one device each)")
	fs.IntVar(&c.users, "users", 200, "users the syncers are spread over; each user logs in syncers/users devices")
	fs.Float64Var(&c.rate, "rate", 1, "messages per second posted by the one sender")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long the sender posts")
	fs.DurationVar(&c.settle, "settle", 5*time.Second, "idle time with all syncers connected before the sender starts")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "how long to wait for outstanding wake-ups after the sender stops")
	fs.IntVar(&c.concurrency, "concurrency", 16, "parallel requests during setup")
	fs.IntVar(&c.syncTimeoutMS, "sync-timeout", 30000, "long-poll timeout passed to /sync, in ms")
	return c.run
}

func (c *idleConfig) run(ctx context.Context, env *env) (*result, error) {
	if c.syncers < 1 || c.users < 1 || c.concurrency < 1 {
		return nil, errors.New("--syncers, --users and --concurrency must be at least 1")
	}
	if c.rate <= 0 || c.duration <= 0 || c.settle < 0 || c.drain < 0 {
		return nil, errors.New("--rate and --duration must be positive, --settle and --drain not negative")
	}
	c.users = min(c.users, c.syncers)
	res := newResult("idle", env)
	res.param("syncers", c.syncers)
	res.param("users", c.users)
	res.param("rate", c.rate)
	res.param("duration", c.duration)
	res.param("settle", c.settle)
	res.param("sync_timeout_ms", c.syncTimeoutMS)
	errs := newErrorCounter(env.log)

	env.phase("setup")
	sender, err := env.hs.register(ctx, env.localpart("idle-sender", 0), env.password)
	if err != nil {
		return nil, fmt.Errorf("registering the sender: %w", err)
	}
	roomID, err := sender.createRoom(ctx, env.g.userPrefix+" idle")
	if err != nil {
		return nil, fmt.Errorf("creating the room: %w", err)
	}
	// Syncer j belongs to user j mod users; the first device of each user
	// is the one registration created, the others are extra logins.
	devices := make([]*account, c.syncers)
	filters := make([]string, c.users)
	err = setupStep(ctx, env, "registering and joining users", c.users, c.concurrency, func(ctx context.Context, u int) (err error) {
		a, err := env.hs.register(ctx, env.localpart("idle", u), env.password)
		if err != nil {
			return err
		}
		if _, err := a.join(ctx, string(roomID)); err != nil {
			return err
		}
		devices[u] = a
		filters[u] = a.uploadFilter(ctx, env.log)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = setupStep(ctx, env, "logging in extra devices", c.syncers-c.users, c.concurrency, func(ctx context.Context, k int) (err error) {
		j := c.users + k
		devices[j], err = env.hs.login(ctx, env.localpart("idle", j%c.users), env.password)
		return err
	})
	if err != nil {
		return nil, err
	}

	// Memory of the server holding the users and devices but no /sync
	// connections, for comparison with the phase below.
	env.phase("set up, no syncers")
	sleepCtx(ctx, 2*time.Second)

	env.phase("initial syncs")
	sinces := make([]string, c.syncers)
	err = setupStep(ctx, env, "initial syncs", c.syncers, c.concurrency, func(ctx context.Context, j int) (err error) {
		sinces[j], err = initialSync(ctx, env, devices[j], filters[j%c.users])
		return err
	})
	if err != nil {
		return nil, err
	}

	// The k-th message is due at k/rate, so rate*duration messages fit in
	// the window.
	capacity := max(1, int(math.Round(c.rate*c.duration.Seconds())))
	t := newTracker(env.g.userPrefix, capacity)
	var st syncLoopStats
	syncCtx, stopSync := context.WithCancel(ctx)
	defer stopSync()
	var loops sync.WaitGroup
	for j := range devices {
		loops.Add(1)
		go func() {
			defer loops.Done()
			syncLoop(syncCtx, env, devices[j], filters[j%c.users], sinces[j], c.syncTimeoutMS, t, &st, errs)
		}()
	}

	env.phase(fmt.Sprintf("%d syncers idle", c.syncers))
	env.log.Info("syncers connected, settling", "syncers", c.syncers, "settle", c.settle)
	sleepCtx(ctx, c.settle)

	env.phase(fmt.Sprintf("%d syncers + sender", c.syncers))
	var sendLat histogram
	var sent atomic.Int64
	var lastDelivered int64
	stopProgress := startProgress(ctx, env.progress, func(time.Duration) string {
		d := t.delivered.Load()
		line := fmt.Sprintf("sent=%d delivered=%d (%d/s) errors=%d syncing=%d", sent.Load(), d, d-lastDelivered, errs.total.Load(), st.active.Load())
		lastDelivered = d
		return line
	})
	runStart := time.Now()
	dispatched := runPaced(ctx, c.rate, c.duration, capacity, 1, func(ctx context.Context, k int) {
		rec, body := t.begin(k, c.syncers)
		_, err := sender.cli.SendMessageEvent(ctx, roomID, event.EventMessage, map[string]any{"msgtype": "m.text", "body": body})
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
	waited := t.drain(ctx, c.drain)
	stopSync()
	loops.Wait()
	stopProgress()

	missing, expected := t.pending()
	errs.addKind("wake-up: missing after drain", missing)
	res.metric("syncers", c.syncers, "")
	res.metric("messages dispatched", dispatched, "")
	res.metric("messages sent", sent.Load(), "")
	res.metric("wake-ups", t.delivered.Load(), "")
	res.metric("wake-ups expected", expected, "")
	res.metric("wake-ups missing", missing, "")
	res.metric("wake-up throughput", round2(rate(t.delivered.Load(), sendWindow+waited)), "deliveries/s")
	res.metric("sync polls", st.polls.Load(), "")
	res.metric("limited timelines", t.limited.Load(), "")
	res.latency("send (PUT)", &sendLat)
	res.latency("send→wake-up", &t.latency)
	if env.server == nil {
		res.note("pass --pid <server pid> to measure the server's memory in each phase")
	}
	res.Errors = errs.snapshot()
	return res, nil
}
