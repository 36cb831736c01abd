package config

import (
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v4"
)

// TURN configures GET /_matrix/client/v3/voip/turnServer. The keys are
// Synapse's, at the top level of the file. With no turn_uris, or with
// neither a shared secret nor a static username and password, clients get
// {} and fall back to STUN or direct connections, as with Synapse.
type TURN struct {
	// URIs are the TURN server URIs handed to clients, such as
	// turn:turn.example.org:3478?transport=udp. Env: MYELIN_TURN_URIS
	// (comma-separated).
	URIs []string `yaml:"turn_uris,omitempty"`
	// SharedSecret is the secret the TURN server checks time-limited
	// credentials with (coturn's use-auth-secret / static-auth-secret):
	// username <expiry unix seconds>:<user ID>, password
	// base64(HMAC-SHA1(secret, username)). It wins over Username and
	// Password. Env: MYELIN_TURN_SHARED_SECRET.
	SharedSecret string `yaml:"turn_shared_secret,omitempty"`
	// Username and Password are static credentials, used when there is no
	// SharedSecret. Env: MYELIN_TURN_USERNAME, MYELIN_TURN_PASSWORD.
	Username string `yaml:"turn_username,omitempty"`
	Password string `yaml:"turn_password,omitempty"`
	// UserLifetime is how long shared-secret credentials stay valid, as
	// Synapse writes it (1h, 30m, 86400000). Default 1h.
	// Env: MYELIN_TURN_USER_LIFETIME.
	UserLifetime Duration `yaml:"turn_user_lifetime,omitempty"`
}

func defaultTURN() TURN { return TURN{UserLifetime: Duration(time.Hour)} }

// Configured reports whether clients get TURN credentials at all.
func (t TURN) Configured() bool {
	return len(t.URIs) > 0 && (t.SharedSecret != "" || (t.Username != "" && t.Password != ""))
}

func (t TURN) validate() error {
	if t.UserLifetime <= 0 {
		return errors.New("turn_user_lifetime must be positive")
	}
	return nil
}

func applyTURNEnv(c *Config, env func(string) (string, bool)) error {
	t := &c.TURN
	if v, ok := env("MYELIN_TURN_URIS"); ok {
		t.URIs = splitList(v)
	}
	for key, dst := range map[string]*string{
		"MYELIN_TURN_SHARED_SECRET": &t.SharedSecret,
		"MYELIN_TURN_USERNAME":      &t.Username,
		"MYELIN_TURN_PASSWORD":      &t.Password,
	} {
		if v, ok := env(key); ok {
			*dst = v
		}
	}
	if v, ok := env("MYELIN_TURN_USER_LIFETIME"); ok && v != "" {
		d, err := ParseDuration(v)
		if err != nil {
			return fmt.Errorf("MYELIN_TURN_USER_LIFETIME: %w", err)
		}
		t.UserLifetime = d
	}
	return nil
}

// turnHandlers are the Synapse keys of the TURN settings, which are
// Myelin's too.
func (r *synapseReader) turnHandlers() map[string]func(string, *yaml.Node) {
	t := &r.cfg.TURN
	str := func(dst *string) func(string, *yaml.Node) {
		return func(key string, n *yaml.Node) {
			if v, ok := r.str(key, n); ok {
				*dst = v
			}
		}
	}
	return map[string]func(string, *yaml.Node){
		"turn_uris": func(key string, n *yaml.Node) {
			if v, ok := r.strList(key, n); ok {
				t.URIs = v
			}
		},
		"turn_shared_secret": str(&t.SharedSecret),
		"turn_username":      str(&t.Username),
		"turn_password":      str(&t.Password),
		"turn_user_lifetime": func(key string, n *yaml.Node) {
			if err := n.Decode(&t.UserLifetime); err != nil {
				r.bad(key, n, "a duration such as 1h")
			}
		},
		"turn_allow_guests": r.ignoredBool("guests may not call /voip/turnServer"),
	}
}
