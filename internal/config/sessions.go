package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.yaml.in/yaml/v4"
)

// Sessions configures access token lifetimes, refresh tokens and login
// tokens. The keys are Synapse's, at the top level of the file.
type Sessions struct {
	// RefreshableAccessTokenLifetime is how long an access token issued
	// with a refresh token (a client that asked for refresh_token: true)
	// stays valid; after it the client gets 401 M_UNKNOWN_TOKEN with
	// soft_logout true and refreshes. Default 5m, as in Synapse.
	// Env: MYELIN_REFRESHABLE_ACCESS_TOKEN_LIFETIME.
	RefreshableAccessTokenLifetime Duration `yaml:"refreshable_access_token_lifetime,omitempty"`
	// RefreshTokenLifetime bounds how long a refresh token can be used;
	// 0 (the default) means until it is used. Env: MYELIN_REFRESH_TOKEN_LIFETIME.
	RefreshTokenLifetime Duration `yaml:"refresh_token_lifetime,omitempty"`
	// LoginViaExistingSession lets a logged-in client issue a one-time
	// login token for another device (POST /login/get_token, then
	// m.login.token), as in a QR-code sign-in.
	LoginViaExistingSession LoginViaExistingSession `yaml:"login_via_existing_session,omitempty"`
}

// LoginViaExistingSession is Synapse's login_via_existing_session section.
type LoginViaExistingSession struct {
	// Enabled serves POST /_matrix/client/v1/login/get_token (always
	// behind the user's password, as the spec requires) and offers
	// m.login.token. Default false, as in Synapse.
	// Env: MYELIN_LOGIN_VIA_EXISTING_SESSION.
	Enabled bool `yaml:"enabled"`
	// TokenTimeout is how long a login token is valid. Default 5m.
	// Env: MYELIN_LOGIN_TOKEN_TIMEOUT.
	TokenTimeout Duration `yaml:"token_timeout,omitempty"`
}

func defaultSessions() Sessions {
	return Sessions{
		RefreshableAccessTokenLifetime: Duration(5 * time.Minute),
		LoginViaExistingSession:        LoginViaExistingSession{TokenTimeout: Duration(5 * time.Minute)},
	}
}

func (s Sessions) validate() error {
	switch {
	case s.RefreshableAccessTokenLifetime <= 0:
		return errors.New("refreshable_access_token_lifetime must be positive")
	case s.RefreshTokenLifetime < 0:
		return errors.New("refresh_token_lifetime must not be negative")
	case s.LoginViaExistingSession.TokenTimeout <= 0:
		return errors.New("login_via_existing_session.token_timeout must be positive")
	}
	return nil
}

func applySessionsEnv(c *Config, env func(string) (string, bool)) error {
	s := &c.Sessions
	var errs []error
	for key, dst := range map[string]*Duration{
		"MYELIN_REFRESHABLE_ACCESS_TOKEN_LIFETIME": &s.RefreshableAccessTokenLifetime,
		"MYELIN_REFRESH_TOKEN_LIFETIME":            &s.RefreshTokenLifetime,
		"MYELIN_LOGIN_TOKEN_TIMEOUT":               &s.LoginViaExistingSession.TokenTimeout,
	} {
		if v, ok := env(key); ok && v != "" {
			d, err := ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				continue
			}
			*dst = d
		}
	}
	for key, dst := range map[string]*bool{
		"MYELIN_LOGIN_VIA_EXISTING_SESSION": &s.LoginViaExistingSession.Enabled,
	} {
		if v, ok := env(key); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want true or false", key, v))
				continue
			}
			*dst = b
		}
	}
	return errors.Join(errs...)
}

// sessionsHandlers are the Synapse keys of the session settings, which are
// Myelin's too.
func (r *synapseReader) sessionsHandlers() map[string]func(string, *yaml.Node) {
	s := &r.cfg.Sessions
	duration := func(dst *Duration) func(string, *yaml.Node) {
		return func(key string, n *yaml.Node) {
			if n.Tag == "!!null" {
				return
			}
			if err := n.Decode(dst); err != nil {
				r.bad(key, n, "a duration such as 5m")
			}
		}
	}
	return map[string]func(string, *yaml.Node){
		"refreshable_access_token_lifetime": duration(&s.RefreshableAccessTokenLifetime),
		"refresh_token_lifetime":            duration(&s.RefreshTokenLifetime),
		"login_via_existing_session": func(key string, n *yaml.Node) {
			m := mapping(n)
			if m == nil {
				r.bad(key, n, "a mapping")
				return
			}
			l := &s.LoginViaExistingSession
			if v := lookup(m, "enabled"); v != nil {
				if b, ok := r.boolean(key+".enabled", v); ok {
					l.Enabled = b
				}
			}
			if v := lookup(m, "require_ui_auth"); v != nil {
				if b, ok := r.boolean(key+".require_ui_auth", v); ok && !b {
					r.info("%s.require_ui_auth: false is ignored: the spec makes every login token ask for the password again", key)
				}
			}
			if v := lookup(m, "token_timeout"); v != nil {
				duration(&l.TokenTimeout)(key+".token_timeout", v)
			}
		},
	}
}
