package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// federatedJoinConfig: a user of the server under test joins a room that
// lives on another server, which forces a federated make_join/send_join and
// the transfer of the room's state. Either name an existing room (--room,
// with --via if its ID carries no server name) or let the bench create one
// on --remote-url and fill it with --members users there.
type federatedJoinConfig struct {
	remoteURL    string
	remoteSecret string
	room         string
	via          string
	members      int
	repeat       int
	concurrency  int
}

func federatedJoinFlags(fs *flag.FlagSet) func(context.Context, *env) (*result, error) {
	c := &federatedJoinConfig{}
	fs.StringVar(&c.remoteURL, "remote-url", "", "client-server API base URL of the other server (to create the room there)")
	fs.StringVar(&c.remoteSecret, "remote-shared-secret", "", "shared secret for registering users on the other server")
	fs.StringVar(&c.room, "room", "", "room alias or ID on the other server to join (default: create one via --remote-url)")
	fs.StringVar(&c.via, "via", "", "comma-separated server names to join through (default: from --room or the created room)")
	fs.IntVar(&c.members, "members", 0, "when creating the room: extra users on the other server to join it first")
	fs.IntVar(&c.repeat, "repeat", 1, "joins to time; each uses a new local user, and only the first is a cold federated join")
	fs.IntVar(&c.concurrency, "concurrency", 16, "parallel requests during setup")
	return c.run
}

func (c *federatedJoinConfig) run(ctx context.Context, env *env) (*result, error) {
	if c.room == "" && c.remoteURL == "" {
		return nil, errors.New("give --room (an alias or ID on another server) or --remote-url (to create one there)")
	}
	if c.repeat < 1 || c.concurrency < 1 || c.members < 0 {
		return nil, errors.New("--repeat and --concurrency must be at least 1")
	}
	res := newResult("federated-join", env)
	env.phase("setup")
	room := c.room
	var via []string
	if c.via != "" {
		via = strings.Split(c.via, ",")
	}
	if room == "" {
		remote := newHomeserver(c.remoteURL, c.remoteSecret, env.g.requestTimeout)
		owner, err := remote.register(ctx, env.localpart("fj-owner", 0), env.password)
		if err != nil {
			return nil, fmt.Errorf("registering on the remote server: %w", err)
		}
		roomID, err := owner.createRoom(ctx, env.g.userPrefix+" federated join")
		if err != nil {
			return nil, fmt.Errorf("creating the remote room: %w", err)
		}
		room = string(roomID)
		if len(via) == 0 {
			via = []string{owner.UserID.Homeserver()}
		}
		err = setupStep(ctx, env, "filling the remote room", c.members, c.concurrency, func(ctx context.Context, i int) error {
			a, err := remote.register(ctx, env.localpart("fj-member", i), env.password)
			if err != nil {
				return err
			}
			_, err = a.join(ctx, room)
			return err
		})
		if err != nil {
			return nil, err
		}
		res.param("remote_url", c.remoteURL)
		res.param("remote_members", c.members+1)
	} else if len(via) == 0 {
		// Aliases and pre-v12 room IDs end in ":server".
		if _, server, ok := strings.Cut(room, ":"); ok {
			via = []string{server}
		}
	}
	res.param("room", room)
	res.param("via", strings.Join(via, ","))
	res.param("repeat", c.repeat)

	errs := newErrorCounter(env.log)
	var joins []time.Duration
	var joined string
	env.phase("joining")
	for i := 0; i < c.repeat && ctx.Err() == nil; i++ {
		a, err := env.hs.register(ctx, env.localpart("fj", i), env.password)
		if err != nil {
			return nil, fmt.Errorf("registering a local user: %w", err)
		}
		start := time.Now()
		roomID, err := a.join(ctx, room, via...)
		took := time.Since(start)
		if err != nil {
			errs.add("join", err)
			continue
		}
		joins = append(joins, took)
		fmt.Fprintf(env.progress, "join %d/%d: %.1f ms\n", i+1, c.repeat, durMS(took))
		if joined == "" {
			joined = string(roomID)
			// Not timed: how much of the room the server knows after the
			// join returned (servers with partial-state joins may
			// still be fetching the rest).
			if m, err := a.cli.JoinedMembers(ctx, roomID); err == nil {
				res.metric("joined members seen after first join", len(m.Joined), "")
			} else {
				errs.add("joined_members", err)
			}
		}
	}
	res.Samples = append(res.Samples, namedSamples{Name: "join (first is cold)", sampleStats: summarizeSamples(joins)})
	if joined != "" {
		res.metric("room ID", joined, "")
	}
	res.Errors = errs.snapshot()
	return res, nil
}
