package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// lazyFilter is the filter clients use to avoid downloading every member of
// every room; the spec lets it be passed inline as the filter parameter.
const lazyFilter = `{"room":{"state":{"lazy_load_members":true}}}`

// initialSyncConfig: one user in many large rooms, timed on the initial
// /sync (no since token) that a new client or a cleared cache performs.
type initialSyncConfig struct {
	rooms       int
	members     int
	messages    int
	repeat      int
	concurrency int
	setupOnly   bool
	reuse       string
}

func initialSyncFlags(fs *flag.FlagSet) func(context.Context, *env) (*result, error) {
	c := &initialSyncConfig{}
	fs.IntVar(&c.rooms, "rooms", 300, "rooms the measured user is in")
	fs.IntVar(&c.members, "members", 300, "members per room, the measured user included (members-1 extra users join every room)")
	fs.IntVar(&c.messages, "messages", 5, "messages posted into each room during setup, so timelines are not only state")
	fs.IntVar(&c.repeat, "repeat", 5, "initial syncs per variant (full, lazy-loaded members)")
	fs.IntVar(&c.concurrency, "concurrency", 16, "parallel requests during setup")
	fs.BoolVar(&c.setupOnly, "setup-only", false, "create the rooms and users, print the access token for --reuse, and stop")
	fs.StringVar(&c.reuse, "reuse", "", "access token of a user set up earlier (see --setup-only): skip setup and only measure")
	return c.run
}

// syncShape is what the bench counts in an initial sync response to check
// it got what it asked for.
type syncShape struct {
	Rooms struct {
		Join map[string]struct {
			State struct {
				Events []struct {
					Type string `json:"type"`
				} `json:"events"`
			} `json:"state"`
			Timeline struct {
				Events []json.RawMessage `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

func (c *initialSyncConfig) run(ctx context.Context, env *env) (*result, error) {
	if c.rooms < 1 || c.members < 1 || c.repeat < 1 || c.concurrency < 1 || c.messages < 0 {
		return nil, errors.New("--rooms, --members, --repeat and --concurrency must be at least 1")
	}
	res := newResult("initial-sync", env)
	var user *account
	var err error
	if c.reuse != "" {
		user, err = env.hs.fromToken(ctx, c.reuse)
		if err != nil {
			return nil, fmt.Errorf("--reuse: %w", err)
		}
		res.param("reused_user", string(user.UserID))
		env.log.Info("reusing user", "user", user.UserID)
	} else {
		res.param("rooms", c.rooms)
		res.param("members", c.members)
		res.param("messages_per_room", c.messages)
		user, err = c.setup(ctx, env)
		if err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(env.progress, "measured user %s; to measure again without setup:\n  myelin-bench --url %s initial-sync --reuse %s\n",
		user.UserID, env.g.url, user.Token)
	if c.setupOnly {
		res.metric("user", string(user.UserID), "")
		res.metric("access token", user.Token, "")
		res.note("rerun with: myelin-bench --url %s initial-sync --reuse %s", env.g.url, user.Token)
		return res, nil
	}
	res.param("repeat", c.repeat)

	errs := newErrorCounter(env.log)
	variants := []struct {
		name, filter string
	}{
		{"full (no filter)", ""},
		{"lazy_load_members", lazyFilter},
	}
	times := make([][]time.Duration, len(variants))
	sizes := make([]int64, len(variants))
	shapes := make([]syncShape, len(variants))
	env.phase("initial syncs")
	// Interleave the variants so neither always runs on a warmer cache.
	for i := 0; i < c.repeat && ctx.Err() == nil; i++ {
		for v, variant := range variants {
			start := time.Now()
			arrived, body, err := user.syncOnce(ctx, env.hs, "", variant.filter, 0, nil)
			if err != nil {
				if ctx.Err() == nil {
					errs.add("initial sync "+variant.name, err)
				}
				continue
			}
			took := arrived.Sub(start)
			times[v] = append(times[v], took)
			sizes[v] = int64(len(body))
			if i == 0 {
				if err := json.Unmarshal(body, &shapes[v]); err != nil {
					errs.add("initial sync "+variant.name, fmt.Errorf("decoding sync response: %w", err))
				}
			}
			fmt.Fprintf(env.progress, "initial sync %d/%d %-18s %8.1f ms %s\n", i+1, c.repeat, variant.name, durMS(took), formatBytes(int64(len(body))))
		}
	}

	for v, variant := range variants {
		res.Samples = append(res.Samples, namedSamples{Name: variant.name, sampleStats: summarizeSamples(times[v]), Bytes: sizes[v]})
		rooms, state, members, timeline := 0, 0, 0, 0
		for _, r := range shapes[v].Rooms.Join {
			rooms++
			state += len(r.State.Events)
			timeline += len(r.Timeline.Events)
			for _, ev := range r.State.Events {
				if ev.Type == event.StateMember.Type {
					members++
				}
			}
		}
		res.metric(variant.name+": rooms", rooms, "")
		res.metric(variant.name+": state events", state, "")
		res.metric(variant.name+": member events in state", members, "")
		res.metric(variant.name+": timeline events", timeline, "")
		if c.reuse == "" && len(times[v]) > 0 && rooms != c.rooms {
			res.note("%s: response has %d joined rooms, expected %d", variant.name, rooms, c.rooms)
		}
	}
	res.Errors = errs.snapshot()
	return res, nil
}

// setup registers the measured user and members-1 others, has the measured
// user create every room, and has every other user join every room.
func (c *initialSyncConfig) setup(ctx context.Context, env *env) (*account, error) {
	env.phase("setup")
	user, err := env.hs.register(ctx, env.localpart("is-main", 0), env.password)
	if err != nil {
		return nil, fmt.Errorf("registering the measured user: %w", err)
	}
	others := make([]*account, c.members-1)
	err = setupStep(ctx, env, "registering members", len(others), c.concurrency, func(ctx context.Context, i int) (err error) {
		others[i], err = env.hs.register(ctx, env.localpart("is", i), env.password)
		return err
	})
	if err != nil {
		return nil, err
	}
	roomIDs := make([]id.RoomID, c.rooms)
	err = setupStep(ctx, env, "creating rooms", c.rooms, c.concurrency, func(ctx context.Context, r int) (err error) {
		roomIDs[r], err = user.createRoom(ctx, fmt.Sprintf("%s initial-sync %d", env.g.userPrefix, r))
		return err
	})
	if err != nil {
		return nil, err
	}
	// Join k puts user k/rooms into room k mod rooms: concurrent joins land
	// in different rooms.
	err = setupStep(ctx, env, "joining rooms", len(others)*c.rooms, c.concurrency, func(ctx context.Context, k int) error {
		_, err := others[k/c.rooms].join(ctx, string(roomIDs[k%c.rooms]))
		return err
	})
	if err != nil {
		return nil, err
	}
	err = setupStep(ctx, env, "posting messages", c.rooms*c.messages, c.concurrency, func(ctx context.Context, k int) error {
		_, err := user.cli.SendMessageEvent(ctx, roomIDs[k%c.rooms], event.EventMessage,
			map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("initial-sync filler %d", k/c.rooms)})
		return err
	})
	if err != nil {
		return nil, err
	}
	return user, nil
}
