package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"

	"github.com/myelin-chat/myelin/internal/config"
)

const registerUserUsage = `Usage: myelin register-user -u NAME [-p PASSWORD] [-a] [--config FILE | [--shared-secret SECRET] URL]

Creates an account on a running server through shared-secret registration,
like Synapse's register_new_matrix_user. Without a URL, the server URL and
the shared secret come from the config file (default <data dir>/homeserver.yaml).
With a URL, the secret comes from --shared-secret, MYELIN_REGISTRATION_SHARED_SECRET
or the config file.

Without -p the password is read from the first line of standard input, which
keeps it out of the process list: echo "$PW" | myelin register-user -u alice

Flags:
`

// newUser is what register-user asks the server to create.
type newUser struct {
	Username, Password string
	Admin              bool
}

func registerUser(args []string) error {
	fs := flag.NewFlagSet("register-user", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), registerUserUsage)
		fs.PrintDefaults()
	}
	var u newUser
	fs.StringVar(&u.Username, "u", "", "localpart of the new user (required)")
	fs.StringVar(&u.Password, "p", "", "password of the new user (default: read from standard input)")
	fs.BoolVar(&u.Admin, "a", false, "make the new user a server admin")
	cfgPath := fs.String("config", "", "config file to read the shared secret and listen address from")
	secret := fs.String("shared-secret", "", "shared secret (default: MYELIN_REGISTRATION_SHARED_SECRET or the config file)")

	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if len(positional) > 1 {
		return fmt.Errorf("register-user takes at most one server URL, got %q", positional)
	}
	if u.Username == "" {
		return errors.New("-u NAME is required")
	}
	if u.Password == "" {
		pw, err := readPassword(os.Stdin)
		if err != nil {
			return err
		}
		u.Password = pw
	}

	serverURL := ""
	if len(positional) == 1 {
		serverURL = positional[0]
	}
	if *secret == "" {
		if v, ok := os.LookupEnv("MYELIN_REGISTRATION_SHARED_SECRET"); ok {
			*secret = v
		}
	}
	if serverURL == "" || *secret == "" {
		cfg, _, err := config.Load(*cfgPath, os.LookupEnv, false)
		if err != nil {
			return fmt.Errorf("reading the config for the shared secret and server address: %w", err)
		}
		if *secret == "" {
			*secret = cfg.RegistrationSharedSecret
		}
		if serverURL == "" {
			if serverURL, err = listenURL(cfg.Listen); err != nil {
				return err
			}
		}
	}
	if *secret == "" {
		return errors.New("no shared secret: set registration_shared_secret in the config, MYELIN_REGISTRATION_SHARED_SECRET or --shared-secret")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	userID, err := sharedSecretRegister(ctx, serverURL, *secret, u)
	if err != nil {
		return err
	}
	fmt.Println(userID)
	return nil
}

// readPassword reads the password from the first line of in, which must not
// be a terminal: without a terminal library the input would be echoed.
func readPassword(in *os.File) (string, error) {
	if st, err := in.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		return "", errors.New("-p PASSWORD is required (or pipe the password on standard input)")
	}
	return readLine(in)
}

func readLine(in io.Reader) (string, error) {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty password: pass -p PASSWORD or pipe the password on standard input")
	}
	return line, nil
}

// listenURL turns a listen address into the URL a local client reaches it
// at: wildcard hosts become loopback.
func listenURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen %q must be host:port: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// sharedSecretRegister creates u on the server at serverURL with
// Synapse-compatible shared-secret registration and returns its user ID.
func sharedSecretRegister(ctx context.Context, serverURL, secret string, u newUser) (id.UserID, error) {
	cli, err := mautrix.NewClient(serverURL, "", "")
	if err != nil {
		return "", fmt.Errorf("server URL %q: %w", serverURL, err)
	}
	admin := synapseadmin.Client{Client: cli}
	resp, err := admin.SharedSecretRegister(ctx, secret, synapseadmin.ReqSharedSecretRegister{
		Username: u.Username, Password: u.Password, Admin: u.Admin,
		// The new account is for someone else to log in with; don't leave a
		// device behind.
		InhibitLogin: true,
	})
	if err != nil {
		return "", fmt.Errorf("registering %s at %s: %w", u.Username, serverURL, err)
	}
	return resp.UserID, nil
}
