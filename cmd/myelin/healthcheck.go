package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/myelin-chat/myelin/internal/config"
)

const healthcheckUsage = `Usage: myelin healthcheck [--url URL] [--config FILE]

Exits 0 when the local server answers GET /health with 200 OK, 1 otherwise.
Without --url the address comes from MYELIN_LISTEN or the config file's
listen (default 0.0.0.0:8008), reached on loopback. Container images use it
as their HEALTHCHECK, so they need no curl.

Flags:
`

func healthcheck(args []string) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), healthcheckUsage)
		fs.PrintDefaults()
	}
	target := fs.String("url", "", "health URL (default http://127.0.0.1:<listen port>/health)")
	cfgPath := fs.String("config", "", "config file to read listen from (default <data dir>/homeserver.yaml)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if *target == "" {
		// The config may be incomplete (no server name in this shell's
		// environment); only listen matters here.
		cfg, _, _ := config.Load(*cfgPath, os.LookupEnv, false)
		listen := cfg.Listen
		if listen == "" {
			listen = config.Defaults().Listen
		}
		base, err := listenURL(listen)
		if err != nil {
			return err
		}
		*target = base + "/health"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		return fmt.Errorf("health URL %q: %w", *target, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "OK" {
		return fmt.Errorf("unhealthy: %s answered %d %q", *target, resp.StatusCode, body)
	}
	return nil
}
