// Command myelin is the Myelin homeserver: `myelin serve` runs it,
// `myelin register-user` creates accounts on a running server and
// `myelin check-federation` checks that a server name federates.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/homeserver"
)

const usage = `Usage: myelin <command> [flags]

Commands:
  serve           run the homeserver
  register-user   create a user through shared-secret registration
  check-federation  check a server name's discovery, TLS, version and keys
  healthcheck     exit 0 when the local server is healthy (container HEALTHCHECK)

Run "myelin <command> -h" for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "register-user":
		err = registerUser(os.Args[2:])
	case "check-federation":
		err = checkFederation(os.Args[2:], os.Stdout)
	case "healthcheck":
		err = healthcheck(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "myelin:", err)
		os.Exit(1)
	}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	cfgPath := fs.String("config", "", "config file (default <data dir>/homeserver.yaml; written with fresh secrets if missing)")
	_ = fs.Parse(args)

	cfg, wrote, err := config.Load(*cfgPath, os.LookupEnv, true)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	for _, n := range cfg.Notes {
		if n.Warn {
			log.Warn(n.Msg)
		} else {
			log.Info(n.Msg)
		}
	}
	if wrote {
		log.Info("wrote a new config file with generated secrets", "data_dir", cfg.DataDir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := homeserver.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// parseInterspersed parses fs from args, accepting positional arguments
// before, between and after the flags, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
