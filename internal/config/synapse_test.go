package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func notesText(notes []Note) string {
	var b strings.Builder
	for _, n := range notes {
		if n.Warn {
			b.WriteString("WARN ")
		}
		b.WriteString(n.Msg + "\n")
	}
	return b.String()
}

func TestSynapseGeneratedConfig(t *testing.T) {
	cfg, wrote, err := Load("testdata/synapse-generated.yaml", envOf(nil), true)
	if err != nil || wrote {
		t.Fatalf("Load = %v, wrote %v", err, wrote)
	}
	want := map[string]any{
		"server_name":        cfg.ServerName == "example.org",
		"listen":             cfg.Listen == "0.0.0.0:8008",
		"x_forwarded":        cfg.XForwarded,
		"database":           cfg.DatabaseURL == "sqlite:/data/homeserver.db",
		"signing_key_path":   cfg.SigningKeyPath == "/data/example.org.signing.key",
		"shared secret":      cfg.RegistrationSharedSecret == "Vq,2=Y1kT_p9mCzQ~h0G#oVb8j^x:Xs;eW8yRkU5n3@T&cd.Lf",
		"registration":       !cfg.EnableRegistration,
		"trusted key server": len(cfg.Federation.TrustedKeyServers) == 1 && cfg.Federation.TrustedKeyServers[0].ServerName == "matrix.org",
		"no federation TLS":  cfg.Federation.Listen == "",
		"media_store_path":   cfg.Media.MediaStorePath == "/data/media_store",
		"authed media":       cfg.Media.EnableAuthenticatedMedia,
	}
	for what, ok := range want {
		if ok != true {
			t.Errorf("%s wrong: %+v", what, cfg)
		}
	}
	notes := notesText(cfg.Notes)
	for _, key := range []string{"macaroon_secret_key: accepted and ignored", "form_secret: accepted and ignored",
		"pid_file: accepted and ignored", "log_config: accepted and ignored", "report_stats: accepted and ignored"} {
		if !strings.Contains(notes, key) {
			t.Errorf("notes lack %q:\n%s", key, notes)
		}
	}
	if strings.Contains(notes, "WARN") {
		t.Errorf("a generated config gives warnings:\n%s", notes)
	}
}

func TestSynapsePostgresConfig(t *testing.T) {
	cfg, _, err := Load("testdata/synapse-postgres.yaml", envOf(nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DatabaseURL != "postgres://synapse:s3cret%2Fwith%40chars@postgres:5432/synapse?sslmode=disable" {
		t.Errorf("database_url = %q", cfg.DatabaseURL)
	}
	if cfg.Listen != "0.0.0.0:8008" || cfg.MetricsListen != "127.0.0.1:9000" || !cfg.XForwarded {
		t.Errorf("listeners: listen %q metrics %q x_forwarded %v", cfg.Listen, cfg.MetricsListen, cfg.XForwarded)
	}
	if cfg.PublicBaseURL != "https://matrix.example.org/" || cfg.Federation.WellKnownServer != "matrix.example.org:443" {
		t.Errorf("delegation: %q %q", cfg.PublicBaseURL, cfg.Federation.WellKnownServer)
	}
	wantKeys := []TrustedKeyServer{{ServerName: "matrix.org", VerifyKeys: map[string]string{"ed25519:auto": "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw"}}}
	if !reflect.DeepEqual(cfg.Federation.TrustedKeyServers, wantKeys) {
		t.Errorf("trusted_key_servers = %+v", cfg.Federation.TrustedKeyServers)
	}
	if !cfg.EnableRegistration || !cfg.Recaptcha.Enabled || cfg.Recaptcha.PublicKey != "6LcPUBLIC" || cfg.Recaptcha.PrivateKey != "6LcPRIVATE" {
		t.Errorf("registration: enabled %v, recaptcha %+v", cfg.EnableRegistration, cfg.Recaptcha)
	}
	if !cfg.Federation.AllowPublicRooms {
		t.Errorf("allow_public_rooms_over_federation: true was not applied")
	}
	if !cfg.UserDirectory.SearchAllUsers {
		t.Errorf("user_directory.search_all_users: true was not applied")
	}
	if len(cfg.AutoJoinRooms) == 0 || !strings.HasPrefix(cfg.AutoJoinRooms[0], "#") {
		t.Errorf("auto_join_rooms = %v", cfg.AutoJoinRooms)
	}
	if p := cfg.URLPreview; !p.Enabled || len(p.IPRangeBlacklist) != 1 || p.MaxSpiderSize != 5<<20 {
		t.Errorf("url previews = %+v, want enabled, one blacklisted range, 5M", p)
	}
	notes := notesText(cfg.Notes)
	if cfg.Media.MaxUploadSize != 50<<20 {
		t.Errorf("max_upload_size = %d, want 50M", cfg.Media.MaxUploadSize)
	}
	for _, want := range []string{"WARN opentracing: unknown Synapse setting",
		"database.args.cp_min: accepted and ignored"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}

func TestSynapseEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "homeserver.yaml")
	if err := os.WriteFile(path, []byte("report_stats: false\nlisteners: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"SYNAPSE_SERVER_NAME": "synapse.example"}, "synapse.example"},
		{map[string]string{"SYNAPSE_SERVER_NAME": "synapse.example", "MYELIN_SERVER_NAME": "myelin.example"}, "myelin.example"},
		{map[string]string{"SYNAPSE_CONFIG_PATH": path, "SYNAPSE_SERVER_NAME": "viapath.example"}, "viapath.example"},
	} {
		p := path
		if tc.env["SYNAPSE_CONFIG_PATH"] != "" {
			p = ""
		}
		cfg, _, err := Load(p, envOf(tc.env), false)
		if err != nil || cfg.ServerName != tc.want {
			t.Errorf("env %v: server_name %q, %v; want %q", tc.env, cfg.ServerName, err, tc.want)
		}
	}
}

func TestSynapseInvalidValues(t *testing.T) {
	base := "server_name: example.org\nreport_stats: false\n"
	for _, tc := range []struct{ yaml, want string }{
		{"listeners:\n  - port: eighty\n    type: http\n", "listeners[0].port (line 4): want a port number from 1 to 65535"},
		{"listeners:\n  - port: 70000\n    type: http\n", "listeners[0].port (line 4): want a port number from 1 to 65535"},
		{"listeners:\n  - type: http\n", "listeners[0].port (line 4): want a port number"},
		{"listeners:\n  - port: 8008\n    tls: maybe\n    type: http\n", "listeners[0].tls (line 5): want true or false"},
		{"listeners: 8008\n", "listeners (line 3): want a list of listeners"},
		{"database:\n  name: mysql\n", "database.name (line 4): want sqlite3 or psycopg2"},
		{"database:\n  name: sqlite3\n  args: {}\n", "database.args.database (line 4): want the path of the SQLite file"},
		{"database:\n  name: psycopg2\n  args:\n    user: x\n", "database.args.database: want the name of the PostgreSQL database"},
		{"database:\n  name: psycopg2\n  args:\n    database: x\n    port: db\n", "database.args.port: want a port number"},
		{"enable_registration: sometimes\n", "enable_registration (line 3): want true or false"},
		{"max_upload_size: fifty megs\n", "max_upload_size (line 3): want a size such as 50M"},
		{"auto_join_rooms:\n  - welcome\n", `auto_join_rooms[0]: want a room alias such as #welcome:example.org, got "welcome"`},
		{"trusted_key_servers:\n  - verify_keys: {}\n", "trusted_key_servers[0].server_name (line 4): want the notary's server name"},
		{"server_name: [a, b]\n", "server_name (line 3): want a string"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "homeserver.yaml")
			if err := os.WriteFile(path, []byte(base+tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(path, envOf(nil), false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSynapseListenerVariants(t *testing.T) {
	yaml := `server_name: example.org
report_stats: false
tls_certificate_path: /data/tls.crt
tls_private_key_path: /data/tls.key
listeners:
  - port: 8448
    type: http
    tls: true
    resources:
      - names: [federation]
  - port: 8008
    bind_addresses: ['127.0.0.1']
    type: http
    resources:
      - names: [client, metrics]
  - port: 8009
    type: http
    resources:
      - names: [client]
  - port: 9093
    type: manhole
database:
  name: psycopg2
  args:
    user: synapse
    dbname: synapse
    host: /var/run/postgresql
    keepalives_idle: 10
`
	path := filepath.Join(t.TempDir(), "homeserver.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(path, envOf(nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8008" || cfg.Federation.Listen != "0.0.0.0:8448" ||
		cfg.Federation.TLSCert != "/data/tls.crt" || cfg.Federation.TLSKey != "/data/tls.key" {
		t.Errorf("listeners: %q %q %q %q", cfg.Listen, cfg.Federation.Listen, cfg.Federation.TLSCert, cfg.Federation.TLSKey)
	}
	if cfg.DatabaseURL != "postgres://synapse@/synapse?host=%2Fvar%2Frun%2Fpostgresql" {
		t.Errorf("database_url = %q", cfg.DatabaseURL)
	}
	notes := notesText(cfg.Notes)
	for _, want := range []string{"WARN listeners[2]: Myelin serves one plain HTTP listener", `listeners[3]: listener type "manhole"`,
		"listeners[1]: the metrics resource", "database.args.keepalives_idle: accepted and ignored"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}

func TestPresenceSetting(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		file string
		env  map[string]string
		want bool
	}{
		{"default", "server_name: a.example\n", nil, true},
		{"myelin off", "server_name: a.example\npresence:\n  enabled: false\n", nil, false},
		{"env off", "server_name: a.example\n", map[string]string{"MYELIN_PRESENCE_ENABLED": "false"}, false},
		{"synapse off", "server_name: a.example\nreport_stats: false\nlisteners: []\npresence:\n  enabled: false\n", nil, false},
		{"synapse on", "server_name: a.example\nreport_stats: false\nlisteners: []\npresence:\n  enabled: true\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"MYELIN_DATA_DIR": dir}
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, _, err := Load(path, envOf(env), false)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Presence.Enabled != tc.want {
				t.Errorf("presence.enabled = %v, want %v", cfg.Presence.Enabled, tc.want)
			}
		})
	}
}
