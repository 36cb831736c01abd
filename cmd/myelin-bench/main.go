// Command myelin-bench is a load generator for Matrix homeservers. It speaks
// only the client-server API (plus the Synapse-compatible shared-secret
// registration endpoint, when asked to), so the same scenarios run against
// Myelin, Synapse or Dendrite and their figures can be compared.
//
// Usage:
//
//	myelin-bench [global flags] <scenario> [scenario flags]
//
// Run "myelin-bench -h" for the scenarios and "myelin-bench <scenario> -h" for
// their flags. docs/PERFORMANCE.md describes what each scenario measures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// globals are the flags every scenario shares. They may be given before or
// after the scenario name.
type globals struct {
	url            string
	sharedSecret   string
	userPrefix     string
	pid            int
	jsonOut        bool
	logLevel       string
	requestTimeout time.Duration
	maxRuntime     time.Duration
	idleSample     time.Duration
	diskPath       string
	cpuProfile     string
}

// register binds the global flags to fs, using the current values as
// defaults so a second FlagSet (the scenario's) does not reset what the first
// one parsed.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.url, "url", g.url, "homeserver base URL (client-server API)")
	fs.StringVar(&g.sharedSecret, "shared-secret", g.sharedSecret,
		"register users via the Synapse-compatible shared-secret admin API instead of m.login.dummy")
	fs.StringVar(&g.userPrefix, "user-prefix", g.userPrefix, "prefix of the user names this run registers (default: random)")
	fs.IntVar(&g.pid, "pid", g.pid, "server process ID: sample its RSS and CPU from /proc every 500ms")
	fs.BoolVar(&g.jsonOut, "json", g.jsonOut, "print the result as JSON instead of a table")
	fs.StringVar(&g.logLevel, "log-level", g.logLevel, "log level: debug, info, warn, error")
	fs.DurationVar(&g.requestTimeout, "request-timeout", g.requestTimeout, "timeout of one ordinary HTTP request")
	fs.DurationVar(&g.maxRuntime, "max-runtime", g.maxRuntime, "hard limit on the whole run, setup included")
	fs.DurationVar(&g.idleSample, "idle-sample", g.idleSample,
		"with --pid, sample the untouched server this long before any request (0 to skip)")
	fs.StringVar(&g.cpuProfile, "cpuprofile", g.cpuProfile,
		"write a CPU profile of the bench itself to this file (to see what the load tool costs)")
	fs.StringVar(&g.diskPath, "disk-path", g.diskPath,
		"server data directory or database file: report how much it grows per message sent (messaging)")
}

// env is what a scenario gets to work with.
type env struct {
	g        globals
	hs       *homeserver
	log      *slog.Logger
	progress io.Writer // per-second progress lines
	server   *procSampler
	self     *procSampler
	password string
}

// localpart names a user of this run: prefix, role and index.
func (e *env) localpart(role string, i int) string {
	return fmt.Sprintf("%s-%s%d", e.g.userPrefix, role, i)
}

// phase marks a new phase in both process samplers.
func (e *env) phase(name string) {
	e.server.Phase(name)
	e.self.Phase(name)
}

// scenario is one benchmark. flags registers its flags and returns the
// function that runs it once they are parsed.
type scenario struct {
	name    string
	summary string
	flags   func(fs *flag.FlagSet) func(ctx context.Context, env *env) (*result, error)
}

var scenarios = []scenario{
	{"messaging", "users in rooms long-poll /sync while messages are sent at a target rate", messagingFlags},
	{"idle", "thousands of idle /sync long-polls, woken by one sender; wake-up latency and server memory", idleFlags},
	{"initial-sync", "initial /sync time of a user in many large rooms, with and without lazy-loaded members", initialSyncFlags},
	{"federated-join", "time to join a room that lives on another server", federatedJoinFlags},
	{"register", "a burst of registrations and then logins", registerFlags},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: myelin-bench [global flags] <scenario> [scenario flags]\n\nScenarios:\n")
	for _, s := range scenarios {
		fmt.Fprintf(w, "  %-15s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "\nGlobal flags (also accepted after the scenario name):\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fmt.Fprintf(w, "\nRun 'myelin-bench <scenario> -h' for the flags of a scenario.\n")
}

func run(args []string, stdout, stderr io.Writer) int {
	g := globals{
		url:            "http://127.0.0.1:8008",
		logLevel:       "info",
		requestTimeout: 60 * time.Second,
		maxRuntime:     3 * time.Hour,
		idleSample:     2 * time.Second,
	}
	top := flag.NewFlagSet("myelin-bench", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, top)
			return 0
		}
		fmt.Fprintf(stderr, "myelin-bench: %v\n\n", err)
		usage(stderr, top)
		return 2
	}
	if top.NArg() == 0 {
		usage(stderr, top)
		return 2
	}
	var sc *scenario
	for i := range scenarios {
		if scenarios[i].name == top.Arg(0) {
			sc = &scenarios[i]
		}
	}
	if sc == nil {
		fmt.Fprintf(stderr, "myelin-bench: unknown scenario %q\n\n", top.Arg(0))
		usage(stderr, top)
		return 2
	}

	fs := flag.NewFlagSet("myelin-bench "+sc.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.register(fs)
	runScenario := sc.flags(fs)
	if err := fs.Parse(top.Args()[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "myelin-bench %s: unexpected arguments %q\n", sc.name, fs.Args())
		return 2
	}
	if err := g.validate(); err != nil {
		fmt.Fprintf(stderr, "myelin-bench: %v\n", err)
		return 2
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		fmt.Fprintf(stderr, "myelin-bench: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// SIGINT/SIGTERM cancel the run; scenarios stop their load and still
	// report what they measured. max-runtime bounds everything else.
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithTimeout(ctx, g.maxRuntime)
	defer cancel()
	if g.cpuProfile != "" {
		f, err := os.Create(g.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "myelin-bench: --cpuprofile: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "myelin-bench: --cpuprofile: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	e := &env{
		g:        g,
		hs:       newHomeserver(g.url, g.sharedSecret, g.requestTimeout),
		log:      log,
		progress: stderr,
		password: "pw-" + g.userPrefix,
	}
	if self, err := startProcSampler(ctx, os.Getpid(), "bench", 500*time.Millisecond, log); err == nil {
		e.self = self
	}
	if g.pid > 0 {
		srv, err := startProcSampler(ctx, g.pid, "server", 500*time.Millisecond, log)
		if err != nil {
			log.Error("cannot sample the server process", "err", err)
			return 1
		}
		e.server = srv
		if g.idleSample > 0 {
			e.phase("idle (before run)")
			log.Info("sampling the idle server", "pid", g.pid, "for", g.idleSample)
			select {
			case <-ctx.Done():
			case <-time.After(g.idleSample):
			}
		}
	}
	log.Info("starting", "scenario", sc.name, "url", g.url, "user_prefix", g.userPrefix)

	res, err := runScenario(ctx, e)
	serverPhases := e.server.Stop()
	selfPhases := e.self.Stop()
	if err != nil {
		log.Error("scenario failed", "scenario", sc.name, "err", err)
		return 1
	}
	res.Process = append(serverPhases, selfPhases...)
	if ctx.Err() != nil {
		res.Interrupted = true
	}
	if g.jsonOut {
		err = writeJSON(stdout, res)
	} else {
		err = writeTable(stdout, res)
	}
	if err != nil {
		log.Error("writing result", "err", err)
		return 1
	}
	return 0
}

func (g *globals) validate() error {
	u, err := url.Parse(g.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url %q: want http(s)://host[:port]", g.url)
	}
	if g.userPrefix == "" {
		g.userPrefix = randomPrefix()
	}
	g.userPrefix = strings.ToLower(g.userPrefix)
	for _, r := range g.userPrefix {
		if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyz0123456789._=-/", r) {
			return fmt.Errorf("--user-prefix %q: only a-z 0-9 . _ = - / are allowed in Matrix user names", g.userPrefix)
		}
	}
	if g.requestTimeout <= 0 || g.maxRuntime <= 0 {
		return errors.New("--request-timeout and --max-runtime must be positive")
	}
	return nil
}
