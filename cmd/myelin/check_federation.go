package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/myelin-chat/myelin/internal/fedcheck"
)

const checkFederationUsage = `Usage: myelin check-federation [--json] [--ca-file FILE] [--allow-private] SERVER_NAME

Checks that SERVER_NAME federates, as a public federation tester does:
/.well-known/matrix/server and SRV discovery, the addresses found, and for
each address the TLS certificate, /_matrix/federation/v1/version and the
signing keys at /_matrix/key/v2/server with their self-signatures.
Exits 1 when any check fails.

Flags:
`

// errCheckFailed makes the command exit non-zero after printing a report.
var errCheckFailed = errors.New("federation check failed")

func checkFederation(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check-federation", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), checkFederationUsage)
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print the report as JSON")
	caFiles := fs.String("ca-file", "", "comma-separated PEM CA files trusted besides the system pool (and SSL_CERT_FILE)")
	allowPrivate := fs.Bool("allow-private", false, "accept loopback and private addresses (test setups)")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if len(positional) != 1 {
		fs.Usage()
		return errors.New("check-federation takes exactly one server name")
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	for _, f := range strings.Split(*caFiles, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pem, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("reading CA file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("CA file %s holds no PEM certificates", f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep := fedcheck.Check(ctx, positional[0], fedcheck.Options{RootCAs: roots, AllowPrivate: *allowPrivate})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if !rep.FederationOK {
		return errCheckFailed
	}
	return nil
}
