package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync/atomic"
	"time"
)

// registerConfig: a burst of registrations, then a login for each account
// that was created, both at a fixed concurrency.
type registerConfig struct {
	count       int
	concurrency int
}

func registerFlags(fs *flag.FlagSet) func(context.Context, *env) (*result, error) {
	c := &registerConfig{}
	fs.IntVar(&c.count, "count", 200, "accounts to register (and then log in)")
	fs.IntVar(&c.concurrency, "concurrency", 16, "requests in flight")
	return c.run
}

func (c *registerConfig) run(ctx context.Context, env *env) (*result, error) {
	if c.count < 1 || c.concurrency < 1 {
		return nil, errors.New("--count and --concurrency must be at least 1")
	}
	res := newResult("register", env)
	res.param("count", c.count)
	res.param("concurrency", c.concurrency)
	method := "m.login.dummy"
	if env.g.sharedSecret != "" {
		method = "shared-secret"
	}
	res.param("method", method)
	errs := newErrorCounter(env.log)

	registered := make([]bool, c.count)
	var regLat, loginLat histogram
	var regOK, loginOK atomic.Int64

	env.phase("registering")
	regTook := c.burst(ctx, env, "register", &regOK, func(ctx context.Context, i int) {
		start := time.Now()
		_, err := env.hs.register(ctx, env.localpart("reg", i), env.password)
		if err != nil {
			if ctx.Err() == nil {
				errs.add("register", err)
			}
			return
		}
		regLat.Record(time.Since(start))
		registered[i] = true
		regOK.Add(1)
	})

	env.phase("logging in")
	loginTook := c.burst(ctx, env, "login", &loginOK, func(ctx context.Context, i int) {
		if !registered[i] {
			return
		}
		start := time.Now()
		_, err := env.hs.login(ctx, env.localpart("reg", i), env.password)
		if err != nil {
			if ctx.Err() == nil {
				errs.add("login", err)
			}
			return
		}
		loginLat.Record(time.Since(start))
		loginOK.Add(1)
	})

	res.metric("registrations", regOK.Load(), "")
	res.metric("registration throughput", round2(rate(regOK.Load(), regTook)), "accounts/s")
	res.metric("logins", loginOK.Load(), "")
	res.metric("login throughput", round2(rate(loginOK.Load(), loginTook)), "logins/s")
	res.latency("register", &regLat)
	res.latency("login", &loginLat)
	res.note("one registration is two requests either way: the UIA probe and the m.login.dummy stage, or the nonce and the signed POST")
	res.Errors = errs.snapshot()
	return res, nil
}

// burst runs op for every index at the configured concurrency with a
// progress line, carrying on past failures, and returns the wall time.
func (c *registerConfig) burst(ctx context.Context, env *env, what string, ok *atomic.Int64, op func(context.Context, int)) time.Duration {
	var done atomic.Int64
	stop := startProgress(ctx, env.progress, func(time.Duration) string {
		return fmt.Sprintf("%s: done=%d/%d ok=%d", what, done.Load(), c.count, ok.Load())
	})
	defer stop()
	start := time.Now()
	_ = forEach(ctx, c.count, c.concurrency, &done, func(ctx context.Context, i int) error {
		op(ctx, i)
		return nil
	})
	return time.Since(start)
}
