// Package config defines Myelin's settings, loads them from a YAML file and
// MYELIN_* environment variables, and writes a fresh file with generated
// secrets on first start.
//
// Field comments are the operator reference. This package imports no other
// Myelin package.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// Config is the whole server configuration.
type Config struct {
	// ServerName is the name in user IDs and room aliases (example.org). It
	// cannot change once users exist. Env: MYELIN_SERVER_NAME.
	ServerName string `yaml:"server_name"`
	// DataDir holds the SQLite database, the signing key and the generated
	// config. Env: MYELIN_DATA_DIR. Default ./data.
	DataDir string `yaml:"data_dir"`
	// DatabaseURL selects the database: empty for an SQLite file in DataDir,
	// postgres://user:pass@host/db for PostgreSQL. Env: MYELIN_DATABASE_URL.
	DatabaseURL string `yaml:"database_url"`
	// Listen is the address of the client (and proxied federation) HTTP
	// listener. Env: MYELIN_LISTEN. Default 0.0.0.0:8008.
	Listen string `yaml:"listen"`
	// PublicBaseURL is the URL clients reach this server at
	// (https://matrix.example.org/). Env: MYELIN_PUBLIC_BASEURL.
	PublicBaseURL string `yaml:"public_baseurl"`
	// EnableRegistration opens /register to anyone (m.login.dummy), or to
	// holders of a registration token when RegistrationRequiresToken is set.
	// Env: MYELIN_ENABLE_REGISTRATION. Default false.
	EnableRegistration bool `yaml:"enable_registration"`
	// RegistrationRequiresToken makes open registration require an
	// m.login.registration_token stage. Env: MYELIN_REGISTRATION_REQUIRES_TOKEN.
	RegistrationRequiresToken bool `yaml:"registration_requires_token"`
	// AllowGuestAccess lets anyone register a guest account
	// (POST /register?kind=guest) without credentials. Guests reach only
	// the endpoints the spec's guest access module lists, join only rooms
	// whose m.room.guest_access is can_join, and may upgrade to a full
	// account. Synapse's key of the same name. Env:
	// MYELIN_ALLOW_GUEST_ACCESS. Default false.
	AllowGuestAccess bool `yaml:"allow_guest_access"`
	// RegistrationSharedSecret enables Synapse-compatible shared-secret
	// registration at /_synapse/admin/v1/register, used by
	// `myelin register-user`. Generated on first start.
	// Env: MYELIN_REGISTRATION_SHARED_SECRET.
	RegistrationSharedSecret string `yaml:"registration_shared_secret"`
	// SigningKeyPath is the ed25519 signing key in Synapse's format
	// ("ed25519 <key id> <base64 seed>"). Default <data dir>/signing.key;
	// generated when missing. Env: MYELIN_SIGNING_KEY_PATH.
	SigningKeyPath string `yaml:"signing_key_path"`
	// MaxRequestBytes caps request bodies; larger ones get 413 M_TOO_LARGE.
	// Default 1 MiB (media uploads have their own limit). Env: MYELIN_MAX_REQUEST_BYTES.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// BcryptCost is the password hashing cost. Default 12; tests lower it.
	// Env: MYELIN_BCRYPT_COST.
	BcryptCost int `yaml:"bcrypt_cost"`
	// DefaultRoomVersion is used by createRoom when none is asked for.
	// Default "12". Env: MYELIN_DEFAULT_ROOM_VERSION.
	DefaultRoomVersion string `yaml:"default_room_version"`
	// RateLimit throttles clients per user (or per IP before login).
	RateLimit RateLimit `yaml:"rate_limit"`
	// LogLevel is debug, info, warn or error. Env: MYELIN_LOG_LEVEL.
	LogLevel string `yaml:"log_level"`
	// MetricsListen is the address of a separate HTTP listener serving
	// Prometheus metrics at /metrics, e.g. 127.0.0.1:9000. Empty: no
	// metrics. Env: MYELIN_METRICS_LISTEN.
	MetricsListen string `yaml:"metrics_listen"`
	// Pprof adds Go's profiler (/debug/pprof/) to the metrics listener, for
	// finding where time goes under load. It needs metrics_listen.
	// Env: MYELIN_PPROF (true/false). Default false.
	Pprof bool `yaml:"pprof"`
	// Federation configures server-to-server traffic.
	Federation Federation `yaml:"federation"`
	// ServeServerWellKnown serves /.well-known/matrix/server delegating
	// federation to the public_baseurl host on port 443 (or the URL's
	// port), unless federation.well_known_server is set.
	// Env: MYELIN_SERVE_WELLKNOWN.
	ServeServerWellKnown bool `yaml:"serve_server_wellknown"`
	// XForwarded trusts X-Forwarded-For and X-Forwarded-Proto on the
	// client listener (set it only behind a proxy that sets them).
	// Env: MYELIN_X_FORWARDED.
	XForwarded bool `yaml:"x_forwarded"`
	// AdminUser and AdminPassword create a server admin at start when it
	// does not exist yet (never written to the config file).
	// Env: MYELIN_ADMIN_USER, MYELIN_ADMIN_PASSWORD.
	AdminUser     string `yaml:"-"`
	AdminPassword string `yaml:"-"`
	// AutoJoinRooms are room aliases every newly registered user joins.
	// Env: MYELIN_AUTO_JOIN_ROOMS (comma-separated).
	AutoJoinRooms []string `yaml:"auto_join_rooms"`
	// AutocreateAutoJoinRooms creates a missing local auto-join room (a
	// public room with that alias, made by the first user to register).
	// Default true. Env: MYELIN_AUTOCREATE_AUTO_JOIN_ROOMS.
	AutocreateAutoJoinRooms bool `yaml:"autocreate_auto_join_rooms"`
	// Recaptcha adds an m.login.recaptcha stage to open registration.
	Recaptcha Recaptcha `yaml:"recaptcha"`
	// MediaStorage selects the store of media bytes: disk or S3.
	MediaStorage MediaStorage `yaml:"media_storage"`
	// URLPreview configures URL previews (Synapse's url_preview_* keys).
	URLPreview URLPreview `yaml:",inline"`
	// Media configures the content repository; its keys are top-level
	// (max_upload_size, media_store_path, ...), see media.go.
	Media Media `yaml:",inline"`
	// TURN configures /voip/turnServer (Synapse's turn_* keys), see voip.go.
	TURN TURN `yaml:",inline"`
	// Email configures the SMTP server for address validation and
	// password resets (Synapse's email section), see email.go.
	Email Email `yaml:"email,omitempty"`
	// RegistrationsRequire3PID lists the media ("email") a new account
	// must validate; empty: none. Env: MYELIN_REGISTRATIONS_REQUIRE_3PID
	// (comma-separated).
	RegistrationsRequire3PID []string `yaml:"registrations_require_3pid,omitempty"`
	// Sessions configures token lifetimes, refresh and login tokens
	// (Synapse's keys), see sessions.go.
	Sessions Sessions `yaml:",inline"`
	// Support is served at /.well-known/matrix/support, see support.go.
	Support Support `yaml:"support,omitempty"`
	// UserDirectory configures POST /user_directory/search.
	UserDirectory UserDirectory `yaml:"user_directory"`
	// Push configures delivery to push gateways (internal/pushers).
	Push Push `yaml:"push"`
	// Presence configures online/offline status (the spec's Presence module).
	Presence Presence `yaml:"presence"`
	// Notifications configures push rule evaluation.
	Notifications Notifications `yaml:"notifications"`
	// Notes are what Load has to tell the operator about the file read
	// (a Synapse config's ignored and unknown keys); the caller logs them.
	Notes []Note `yaml:"-"`
}

// UserDirectory configures who a user directory search finds.
type UserDirectory struct {
	// SearchAllUsers lets a search find every local user and every remote
	// user this server knows from a room, not only those who share a room
	// with the searcher or are in a public room. Default false.
	// Env: MYELIN_USER_DIRECTORY_SEARCH_ALL_USERS. Synapse:
	// user_directory.search_all_users.
	SearchAllUsers bool `yaml:"search_all_users"`
}

// Push configures delivery of notifications to HTTP push gateways.
type Push struct {
	// AllowPrivate lets pushers reach gateways on loopback, private and
	// link-local addresses (a gateway on the operator's own network, test
	// setups). Default false: such gateways are refused at connect time.
	// Env: MYELIN_PUSH_ALLOW_PRIVATE. Synapse has no such key: its
	// ip_range_blacklist covers push too.
	AllowPrivate bool `yaml:"allow_private"`
}

// Presence configures users' presence (online, unavailable, offline).
type Presence struct {
	// Enabled tracks presence: set through PUT /presence and /sync's
	// set_presence, sent in /sync to users sharing a room and over
	// federation. Off, the endpoints still answer (PUT is accepted and
	// ignored, GET says offline) but nothing is tracked, sent or synced,
	// as with Synapse's presence.enabled: false. Default true.
	// Env: MYELIN_PRESENCE_ENABLED. Synapse: presence.enabled.
	Enabled bool `yaml:"enabled"`
	// Timeouts overrides the presence timers; zero fields keep Synapse's
	// values (5 min idle, 30 s after the last sync, 30 min for remote
	// users). Not read from files or the environment: tests shorten them.
	Timeouts PresenceTimeouts `yaml:"-"`
}

// PresenceTimeouts are the presence timers; see Presence.Timeouts.
type PresenceTimeouts struct {
	Idle, SyncOnline, ActiveGranularity, Federation, FederationPing time.Duration
}

// Notifications configures push rule evaluation: the notifications and
// unread counts of /sync, GET /notifications and pushes.
type Notifications struct {
	// EvaluatePushRules evaluates every member's push rules on every
	// event. Off, no notifications are recorded, every unread count stays
	// zero and nothing is pushed; events sent meanwhile are never
	// evaluated. For comparisons (benchmarks), not for production.
	// Default true. Env: MYELIN_NOTIFICATIONS_EVALUATE_PUSH_RULES.
	EvaluatePushRules bool `yaml:"evaluate_push_rules"`
}

// Recaptcha holds the reCAPTCHA keys used to verify registrations.
type Recaptcha struct {
	// Enabled requires a solved captcha to register.
	// Env: MYELIN_RECAPTCHA (true/false).
	Enabled bool `yaml:"enabled"`
	// PublicKey is given to clients to show the captcha.
	// Env: MYELIN_RECAPTCHA_PUBLIC_KEY.
	PublicKey string `yaml:"public_key"`
	// PrivateKey verifies responses. Env: MYELIN_RECAPTCHA_PRIVATE_KEY.
	PrivateKey string `yaml:"private_key"`
	// SiteverifyAPI is where responses are checked. Default
	// https://www.recaptcha.net/recaptcha/api/siteverify.
	// Env: MYELIN_RECAPTCHA_SITEVERIFY_API.
	SiteverifyAPI string `yaml:"siteverify_api"`
}

// Federation holds the server-server settings. The federation API is always
// served on the client listener too, for deployments where a TLS proxy on
// 443 forwards everything to Myelin; the TLS listener below is for direct
// federation on 8448.
type Federation struct {
	// Listen is the address of the federation TLS listener, e.g.
	// 0.0.0.0:8448. Empty: no separate listener. Env: MYELIN_FEDERATION_LISTEN.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are the PEM certificate chain and key of the
	// federation listener. Env: MYELIN_TLS_CERT, MYELIN_TLS_KEY.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TLSCACert and TLSCAKey name a CA certificate and key. When set and no
	// TLSCert is given, Myelin issues itself a certificate for its server
	// name signed by that CA at start (for test suites that hand the server
	// their CA). The key may be ECDSA, RSA (PKCS#1 or PKCS#8) or Ed25519.
	// Env: MYELIN_TLS_CA_CERT, MYELIN_TLS_CA_KEY.
	TLSCACert string `yaml:"tls_ca_cert"`
	TLSCAKey  string `yaml:"tls_ca_key"`
	// ExtraCAFiles are PEM files of CAs trusted for outbound federation on
	// top of the system pool (and SSL_CERT_FILE). Env: MYELIN_FEDERATION_CA_FILES
	// (comma-separated).
	ExtraCAFiles []string `yaml:"extra_ca_files"`
	// AllowPrivate permits outbound federation to loopback, private and
	// link-local addresses. Default false. Env: MYELIN_FEDERATION_ALLOW_PRIVATE.
	AllowPrivate bool `yaml:"allow_private"`
	// WellKnownServer, when set, is served as m.server in
	// /.well-known/matrix/server (e.g. matrix.example.org:443), delegating
	// federation for server_name to this host. Env: MYELIN_WELL_KNOWN_SERVER.
	WellKnownServer string `yaml:"well_known_server"`
	// AllowPublicRooms serves the public room directory to other servers
	// (/_matrix/federation/v1/publicRooms). Default true; a Synapse config
	// without allow_public_rooms_over_federation keeps Synapse's false.
	// Env: MYELIN_FEDERATION_PUBLIC_ROOMS.
	AllowPublicRooms bool `yaml:"allow_public_rooms"`
	// TrustedKeyServers are notaries asked for remote keys that cannot be
	// fetched directly. Empty: fetch directly only.
	TrustedKeyServers []TrustedKeyServer `yaml:"trusted_key_servers"`
	// TestHosts maps server names to host:port, bypassing discovery. For
	// test suites only (hs1 → 127.0.0.1:PORT). Env: MYELIN_FEDERATION_TEST_HOSTS
	// as "hs1=127.0.0.1:8448,hs2=127.0.0.1:8449".
	TestHosts map[string]string `yaml:"test_hosts"`
}

// TrustedKeyServer is a notary and the keys its responses must be signed with.
type TrustedKeyServer struct {
	ServerName string `yaml:"server_name"`
	// VerifyKeys maps key IDs (ed25519:abc) to unpadded base64 public keys.
	// Empty: trust the keys the notary serves itself (on first use).
	VerifyKeys map[string]string `yaml:"verify_keys"`
}

// RateLimit is a token bucket per requester.
type RateLimit struct {
	// Enabled turns rate limiting on. Env: MYELIN_RATE_LIMIT (true/false).
	Enabled bool `yaml:"enabled"`
	// PerSecond is the sustained request rate. Default 50.
	// Env: MYELIN_RATE_LIMIT_PER_SECOND.
	PerSecond float64 `yaml:"per_second"`
	// Burst is how many requests may arrive at once. Default 200.
	// Env: MYELIN_RATE_LIMIT_BURST.
	Burst int `yaml:"burst"`
	// ReportsPerSecond is the sustained rate at which one user may report
	// events, rooms and users (Synapse: rc_reports.per_second), on top of
	// the general limit. Default 1. Env: MYELIN_RATE_LIMIT_REPORTS_PER_SECOND.
	ReportsPerSecond float64 `yaml:"reports_per_second"`
	// ReportsBurst is how many reports one user may send at once
	// (Synapse: rc_reports.burst_count). Default 5.
	// Env: MYELIN_RATE_LIMIT_REPORTS_BURST.
	ReportsBurst int `yaml:"reports_burst"`
}

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		DataDir:                 "./data",
		Listen:                  "0.0.0.0:8008",
		MaxRequestBytes:         1 << 20,
		BcryptCost:              12,
		DefaultRoomVersion:      "12",
		AutocreateAutoJoinRooms: true,
		Notifications:           Notifications{EvaluatePushRules: true},
		Federation:              Federation{AllowPublicRooms: true},
		Recaptcha:               Recaptcha{SiteverifyAPI: "https://www.recaptcha.net/recaptcha/api/siteverify"},
		MediaStorage:            MediaStorage{S3: S3{UseSSL: true}},
		URLPreview:              URLPreview{MaxSpiderSize: 10 << 20},
		RateLimit:               RateLimit{Enabled: true, PerSecond: 50, Burst: 200, ReportsPerSecond: 1, ReportsBurst: 5},
		LogLevel:                "info",
		Media:                   defaultMedia(),
		TURN:                    defaultTURN(),
		Sessions:                defaultSessions(),
		Email:                   defaultEmail(),
		Presence:                Presence{Enabled: true},
	}
}

// Load reads the config file at path (when it exists), then applies MYELIN_*
// environment overrides from env, then fills generated secrets. When the file
// does not exist and generate is true, a new one with fresh secrets is written.
// The boolean result reports whether a new file was written.
func Load(path string, env func(string) (string, bool), generate bool) (Config, bool, error) {
	cfg := Defaults()
	if v, ok := env("MYELIN_DATA_DIR"); ok && v != "" {
		cfg.DataDir = v
	}
	if v, ok := env("SYNAPSE_CONFIG_PATH"); ok && v != "" && path == "" {
		path = v
	}
	if path == "" {
		path = filepath.Join(cfg.DataDir, "homeserver.yaml")
	}
	raw, err := os.ReadFile(path)
	exists := err == nil
	switch {
	case exists:
		var doc yaml.Node
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return cfg, false, fmt.Errorf("config %s: %w", path, err)
		}
		if isSynapse(&doc) {
			if cfg.Notes, err = readSynapse(&cfg, &doc); err != nil {
				return cfg, false, fmt.Errorf("config %s (Synapse format): %w", path, err)
			}
			break
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, false, fmt.Errorf("config %s: %w", path, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if !generate {
			return cfg, false, fmt.Errorf("config %s does not exist", path)
		}
	default:
		return cfg, false, fmt.Errorf("reading config %s: %w", path, err)
	}
	if err := applyEnv(&cfg, env); err != nil {
		return cfg, false, err
	}
	if cfg.SigningKeyPath == "" {
		cfg.SigningKeyPath = filepath.Join(cfg.DataDir, "signing.key")
	}
	wrote := false
	if !exists {
		if cfg.RegistrationSharedSecret == "" {
			cfg.RegistrationSharedSecret = randomSecret()
		}
		if err := write(path, cfg); err != nil {
			return cfg, false, err
		}
		wrote = true
	}
	if err := cfg.derive(); err != nil {
		return cfg, wrote, err
	}
	return cfg, wrote, cfg.Validate()
}

// Validate checks that the settings are usable, naming the key at fault.
func (c *Config) Validate() error {
	if c.ServerName == "" {
		return errors.New("server_name (MYELIN_SERVER_NAME) must be set, e.g. example.org")
	}
	if strings.ContainsAny(c.ServerName, "/@:!# ") && !validHostPort(c.ServerName) {
		return fmt.Errorf("server_name %q is not a valid server name (host or host:port)", c.ServerName)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q must be host:port: %w", c.Listen, err)
	}
	if c.Recaptcha.Enabled && (c.Recaptcha.PublicKey == "" || c.Recaptcha.PrivateKey == "" || c.Recaptcha.SiteverifyAPI == "") {
		return errors.New("recaptcha.enabled needs recaptcha.public_key, private_key and siteverify_api (MYELIN_RECAPTCHA_*)")
	}
	for i, a := range c.AutoJoinRooms {
		if !strings.HasPrefix(a, "#") || !strings.Contains(a, ":") {
			return fmt.Errorf("auto_join_rooms[%d]: want a room alias such as #welcome:example.org, got %q", i, a)
		}
	}
	if c.Pprof && c.MetricsListen == "" {
		return errors.New("pprof (MYELIN_PPROF) is served on the metrics listener: set metrics_listen (MYELIN_METRICS_LISTEN) too")
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("metrics_listen %q must be host:port: %w", c.MetricsListen, err)
		}
	}
	if c.BcryptCost < 4 || c.BcryptCost > 31 {
		return fmt.Errorf("bcrypt_cost %d must be between 4 and 31", c.BcryptCost)
	}
	if c.Federation.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Federation.Listen); err != nil {
			return fmt.Errorf("federation.listen %q must be host:port: %w", c.Federation.Listen, err)
		}
		hasCert := c.Federation.TLSCert != "" && c.Federation.TLSKey != ""
		hasCA := c.Federation.TLSCACert != "" && c.Federation.TLSCAKey != ""
		if !hasCert && !hasCA {
			return errors.New("federation.listen needs tls_cert and tls_key (MYELIN_TLS_CERT, MYELIN_TLS_KEY), or tls_ca_cert and tls_ca_key")
		}
	}
	if err := c.validateDeploy(); err != nil {
		return err
	}
	if err := c.MediaStorage.validate(); err != nil {
		return err
	}
	if err := c.URLPreview.validate(); err != nil {
		return err
	}
	if err := c.Media.validate(); err != nil {
		return err
	}
	if err := c.Email.validate(); err != nil {
		return err
	}
	for _, m := range c.RegistrationsRequire3PID {
		if m != "email" {
			return fmt.Errorf("registrations_require_3pid: %q is not supported (only email)", m)
		}
		if !c.Email.Enabled() {
			return fmt.Errorf("registrations_require_3pid: email needs email.smtp_host and email.notif_from")
		}
	}
	if err := c.Sessions.validate(); err != nil {
		return err
	}
	if err := c.TURN.validate(); err != nil {
		return err
	}
	if err := c.Support.validate(); err != nil {
		return err
	}
	if c.MaxRequestBytes <= 0 {
		return fmt.Errorf("max_request_bytes must be positive")
	}
	if c.RateLimit.Enabled && (c.RateLimit.PerSecond <= 0 || c.RateLimit.Burst <= 0) {
		return fmt.Errorf("rate_limit.per_second and rate_limit.burst must be positive when rate limiting is enabled")
	}
	if c.RateLimit.Enabled && (c.RateLimit.ReportsPerSecond <= 0 || c.RateLimit.ReportsBurst <= 0) {
		return fmt.Errorf("rate_limit.reports_per_second and rate_limit.reports_burst must be positive when rate limiting is enabled")
	}
	return nil
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	_, err = strconv.ParseUint(port, 10, 16)
	return err == nil
}

func applyEnv(c *Config, env func(string) (string, bool)) error {
	str := func(key string, dst *string) {
		if v, ok := env(key); ok {
			*dst = v
		}
	}
	boolean := func(key string, dst *bool) error {
		if v, ok := env(key); ok && v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s=%q: want true or false", key, v)
			}
			*dst = b
		}
		return nil
	}
	integer := func(key string, dst *int) error {
		if v, ok := env(key); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s=%q: want an integer", key, v)
			}
			*dst = n
		}
		return nil
	}
	str("MYELIN_SERVER_NAME", &c.ServerName)
	str("MYELIN_DATABASE_URL", &c.DatabaseURL)
	str("MYELIN_LISTEN", &c.Listen)
	str("MYELIN_PUBLIC_BASEURL", &c.PublicBaseURL)
	str("MYELIN_REGISTRATION_SHARED_SECRET", &c.RegistrationSharedSecret)
	str("MYELIN_SIGNING_KEY_PATH", &c.SigningKeyPath)
	str("MYELIN_DEFAULT_ROOM_VERSION", &c.DefaultRoomVersion)
	str("MYELIN_LOG_LEVEL", &c.LogLevel)
	str("MYELIN_METRICS_LISTEN", &c.MetricsListen)
	str("MYELIN_SUPPORT_PAGE", &c.Support.SupportPage)
	if v, ok := env("MYELIN_MAX_REQUEST_BYTES"); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("MYELIN_MAX_REQUEST_BYTES=%q: want an integer", v)
		}
		c.MaxRequestBytes = n
	}
	if v, ok := env("MYELIN_RATE_LIMIT_PER_SECOND"); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("MYELIN_RATE_LIMIT_PER_SECOND=%q: want a number", v)
		}
		c.RateLimit.PerSecond = f
	}
	if v, ok := env("MYELIN_RATE_LIMIT_REPORTS_PER_SECOND"); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("MYELIN_RATE_LIMIT_REPORTS_PER_SECOND=%q: want a number", v)
		}
		c.RateLimit.ReportsPerSecond = f
	}
	str("MYELIN_RECAPTCHA_PUBLIC_KEY", &c.Recaptcha.PublicKey)
	str("MYELIN_RECAPTCHA_PRIVATE_KEY", &c.Recaptcha.PrivateKey)
	str("MYELIN_RECAPTCHA_SITEVERIFY_API", &c.Recaptcha.SiteverifyAPI)
	if v, ok := env("MYELIN_AUTO_JOIN_ROOMS"); ok && v != "" {
		c.AutoJoinRooms = splitList(v)
	}
	str("MYELIN_FEDERATION_LISTEN", &c.Federation.Listen)
	str("MYELIN_TLS_CERT", &c.Federation.TLSCert)
	str("MYELIN_TLS_KEY", &c.Federation.TLSKey)
	str("MYELIN_TLS_CA_CERT", &c.Federation.TLSCACert)
	str("MYELIN_TLS_CA_KEY", &c.Federation.TLSCAKey)
	str("MYELIN_WELL_KNOWN_SERVER", &c.Federation.WellKnownServer)
	if v, ok := env("MYELIN_FEDERATION_CA_FILES"); ok && v != "" {
		c.Federation.ExtraCAFiles = splitList(v)
	}
	if v, ok := env("MYELIN_FEDERATION_TEST_HOSTS"); ok && v != "" {
		hosts := map[string]string{}
		for _, pair := range splitList(v) {
			name, addr, found := strings.Cut(pair, "=")
			if !found || name == "" || !validHostPort(addr) {
				return fmt.Errorf("MYELIN_FEDERATION_TEST_HOSTS: %q is not name=host:port", pair)
			}
			hosts[name] = addr
		}
		c.Federation.TestHosts = hosts
	}
	return errors.Join(
		applyDeployEnv(c, env),
		applyMediaStorageEnv(c, env),
		applyURLPreviewEnv(c, env),
		applyMediaEnv(&c.Media, env),
		applyTURNEnv(c, env),
		applySessionsEnv(c, env),
		applyEmailEnv(c, env),
		boolean("MYELIN_FEDERATION_ALLOW_PRIVATE", &c.Federation.AllowPrivate),
		boolean("MYELIN_PUSH_ALLOW_PRIVATE", &c.Push.AllowPrivate),
		boolean("MYELIN_PPROF", &c.Pprof),
		boolean("MYELIN_PRESENCE_ENABLED", &c.Presence.Enabled),
		boolean("MYELIN_USER_DIRECTORY_SEARCH_ALL_USERS", &c.UserDirectory.SearchAllUsers),
		boolean("MYELIN_NOTIFICATIONS_EVALUATE_PUSH_RULES", &c.Notifications.EvaluatePushRules),
		boolean("MYELIN_RECAPTCHA", &c.Recaptcha.Enabled),
		boolean("MYELIN_FEDERATION_PUBLIC_ROOMS", &c.Federation.AllowPublicRooms),
		boolean("MYELIN_AUTOCREATE_AUTO_JOIN_ROOMS", &c.AutocreateAutoJoinRooms),
		boolean("MYELIN_ENABLE_REGISTRATION", &c.EnableRegistration),
		boolean("MYELIN_ALLOW_GUEST_ACCESS", &c.AllowGuestAccess),
		boolean("MYELIN_REGISTRATION_REQUIRES_TOKEN", &c.RegistrationRequiresToken),
		boolean("MYELIN_RATE_LIMIT", &c.RateLimit.Enabled),
		integer("MYELIN_RATE_LIMIT_BURST", &c.RateLimit.Burst),
		integer("MYELIN_RATE_LIMIT_REPORTS_BURST", &c.RateLimit.ReportsBurst),
		integer("MYELIN_BCRYPT_COST", &c.BcryptCost),
	)
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func write(path string, c Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating config directory: %w", err)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding config: %w", err)
	}
	header := "# Myelin configuration, generated on first start. Every key can be\n# overridden by a MYELIN_* environment variable; see README.md.\n"
	if err := os.WriteFile(path, append([]byte(header), out...), 0o600); err != nil {
		return fmt.Errorf("writing config %s: %w", path, err)
	}
	return nil
}

func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
