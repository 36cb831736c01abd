package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// applyDeployEnv reads the environment variables of container
// deployments: the first admin, well-known serving and proxy headers.
func applyDeployEnv(c *Config, env func(string) (string, bool)) error {
	// Synapse's image takes the server name from SYNAPSE_SERVER_NAME.
	if v, ok := env("SYNAPSE_SERVER_NAME"); ok && v != "" {
		if _, mine := env("MYELIN_SERVER_NAME"); !mine {
			c.ServerName = v
		}
	}
	if v, ok := env("MYELIN_ADMIN_USER"); ok {
		c.AdminUser = v
	}
	if v, ok := env("MYELIN_ADMIN_PASSWORD"); ok {
		c.AdminPassword = v
	}
	var errs []error
	for key, dst := range map[string]*bool{
		"MYELIN_SERVE_WELLKNOWN": &c.ServeServerWellKnown,
		"MYELIN_X_FORWARDED":     &c.XForwarded,
	} {
		if v, ok := env(key); ok && v != "" {
			b, err := parseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want true or false", key, v))
				continue
			}
			*dst = b
		}
	}
	return errors.Join(errs...)
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "t", "true", "yes", "on":
		return true, nil
	case "0", "f", "false", "no", "off":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// derive fills settings computed from others: with serve_server_wellknown,
// the delegation target is the public_baseurl host on its port, 443 by
// default (as Synapse does), unless federation.well_known_server is set.
func (c *Config) derive() error {
	if !c.ServeServerWellKnown || c.Federation.WellKnownServer != "" {
		return nil
	}
	if c.PublicBaseURL == "" {
		return errors.New("serve_server_wellknown (MYELIN_SERVE_WELLKNOWN) needs public_baseurl (MYELIN_PUBLIC_BASEURL), e.g. https://matrix.example.org/")
	}
	host, port, err := publicHostPort(c.PublicBaseURL)
	if err != nil {
		return err
	}
	c.Federation.WellKnownServer = net.JoinHostPort(host, port)
	return nil
}

// publicHostPort returns the host and port (443 or 80 by default) of
// public_baseurl.
func publicHostPort(baseURL string) (host, port string, err error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return "", "", fmt.Errorf("public_baseurl %q must be an http(s) URL, e.g. https://matrix.example.org/", baseURL)
	}
	port = u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	return u.Hostname(), port, nil
}

// validateDeploy checks the settings of deploy.go, naming the key at fault.
func (c *Config) validateDeploy() error {
	if (c.AdminUser == "") != (c.AdminPassword == "") {
		return errors.New("MYELIN_ADMIN_USER and MYELIN_ADMIN_PASSWORD must be set together")
	}
	if c.PublicBaseURL != "" {
		if _, _, err := publicHostPort(c.PublicBaseURL); err != nil {
			return err
		}
	}
	return nil
}

// AdminLocalpart returns the localpart of AdminUser, which may be given as
// a localpart (admin) or a user ID (@admin:example.org).
func (c *Config) AdminLocalpart() string {
	lp := strings.TrimPrefix(c.AdminUser, "@")
	if i := strings.IndexByte(lp, ':'); i >= 0 {
		lp = lp[:i]
	}
	return lp
}
