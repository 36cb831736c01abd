package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFirstStartWritesConfigWithSecret(t *testing.T) {
	dir := t.TempDir()
	env := envOf(map[string]string{"MYELIN_DATA_DIR": dir, "MYELIN_SERVER_NAME": "example.org"})
	cfg, wrote, err := Load("", env, true)
	if err != nil || !wrote {
		t.Fatalf("Load = %v, wrote=%v", err, wrote)
	}
	if len(cfg.RegistrationSharedSecret) < 32 {
		t.Fatalf("generated secret %q is too short", cfg.RegistrationSharedSecret)
	}
	if cfg.SigningKeyPath != filepath.Join(dir, "signing.key") {
		t.Fatalf("signing key path = %q", cfg.SigningKeyPath)
	}
	// The second start reads the same secret back and writes nothing.
	again, wrote, err := Load("", env, true)
	if err != nil || wrote || again.RegistrationSharedSecret != cfg.RegistrationSharedSecret {
		t.Fatalf("second Load: wrote=%v err=%v secret changed=%v", wrote, err, again.RegistrationSharedSecret != cfg.RegistrationSharedSecret)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "homeserver.yaml")
	yaml := "server_name: file.org\nlisten: 127.0.0.1:9000\nenable_registration: false\nrate_limit:\n  enabled: true\n  per_second: 5\n  burst: 10\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(path, envOf(map[string]string{
		"MYELIN_SERVER_NAME": "env.org", "MYELIN_ENABLE_REGISTRATION": "true",
		"MYELIN_DATABASE_URL": "postgres://u@h/db", "MYELIN_RATE_LIMIT": "false",
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "env.org" || !cfg.EnableRegistration || cfg.Listen != "127.0.0.1:9000" ||
		cfg.DatabaseURL != "postgres://u@h/db" || cfg.RateLimit.Enabled || cfg.RateLimit.Burst != 10 {
		t.Fatalf("merged config wrong: %+v", cfg)
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"unknown key", "server_name: a.org\nno_such_key: 1\n", nil, "no_such_key"},
		{"missing server name", "listen: 127.0.0.1:1\n", nil, "server_name"},
		{"bad listen", "server_name: a.org\nlisten: nonsense\n", nil, "listen"},
		{"bad bool env", "server_name: a.org\n", map[string]string{"MYELIN_ENABLE_REGISTRATION": "maybe"}, "MYELIN_ENABLE_REGISTRATION"},
		{"bad bcrypt", "server_name: a.org\nbcrypt_cost: 2\n", nil, "bcrypt_cost"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(path, envOf(c.env), false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v does not name %q", err, c.want)
			}
		})
	}
}

func TestPushEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"MYELIN_PUSH_ALLOW_PRIVATE": "true"}, true},
	} {
		tc.env["MYELIN_DATA_DIR"], tc.env["MYELIN_SERVER_NAME"] = t.TempDir(), "a.org"
		cfg, _, err := Load("", envOf(tc.env), true)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Push.AllowPrivate != tc.want {
			t.Errorf("env %v: push.allow_private = %v, want %v", tc.env, cfg.Push.AllowPrivate, tc.want)
		}
	}
}

func TestFederationEnvironment(t *testing.T) {
	dir := t.TempDir()
	env := envOf(map[string]string{
		"MYELIN_DATA_DIR": dir, "MYELIN_SERVER_NAME": "127.0.0.1:8448",
		"MYELIN_FEDERATION_LISTEN": "127.0.0.1:8448", "MYELIN_TLS_CERT": "c.pem", "MYELIN_TLS_KEY": "k.pem",
		"MYELIN_FEDERATION_ALLOW_PRIVATE": "true",
		"MYELIN_FEDERATION_TEST_HOSTS":    "hs1=127.0.0.1:1001, hs2=127.0.0.1:1002",
		"MYELIN_FEDERATION_CA_FILES":      "a.pem,b.pem",
	})
	cfg, _, err := Load("", env, true)
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Federation
	if f.Listen != "127.0.0.1:8448" || f.TLSCert != "c.pem" || f.TLSKey != "k.pem" || !f.AllowPrivate {
		t.Fatalf("federation = %+v", f)
	}
	if f.TestHosts["hs1"] != "127.0.0.1:1001" || f.TestHosts["hs2"] != "127.0.0.1:1002" || len(f.ExtraCAFiles) != 2 {
		t.Fatalf("test hosts / CA files = %v / %v", f.TestHosts, f.ExtraCAFiles)
	}

	bad := envOf(map[string]string{"MYELIN_DATA_DIR": t.TempDir(), "MYELIN_SERVER_NAME": "a.org", "MYELIN_FEDERATION_TEST_HOSTS": "hs1"})
	if _, _, err := Load("", bad, true); err == nil || !strings.Contains(err.Error(), "MYELIN_FEDERATION_TEST_HOSTS") {
		t.Fatalf("bad test hosts: err = %v", err)
	}
	noCert := envOf(map[string]string{"MYELIN_DATA_DIR": t.TempDir(), "MYELIN_SERVER_NAME": "a.org", "MYELIN_FEDERATION_LISTEN": ":8448"})
	if _, _, err := Load("", noCert, true); err == nil || !strings.Contains(err.Error(), "tls_cert") {
		t.Fatalf("listener without a certificate: err = %v", err)
	}
}

func TestMediaSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "homeserver.yaml")
	body := "server_name: example.org\nmax_upload_size: 10M\nenable_authenticated_media: false\n" +
		"thumbnail_sizes:\n  - {width: 64, height: 64, method: crop}\nmedia_retention:\n  remote_media_lifetime: 90d\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(path, envOf(map[string]string{"MYELIN_MEDIA_USER_QUOTA": "1G"}), false)
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Media
	if m.MaxUploadSize != 10<<20 || m.EnableAuthenticatedMedia || len(m.ThumbnailSizes) != 1 ||
		time.Duration(m.MediaRetention.RemoteMediaLifetime) != 90*24*time.Hour || m.MediaUserQuota != 1<<30 ||
		m.MaxImagePixels != 32<<20 {
		t.Errorf("media settings = %+v", m)
	}
	if _, _, err := Load(path, envOf(map[string]string{"MYELIN_MAX_UPLOAD_SIZE": "lots"}), false); err == nil ||
		!strings.Contains(err.Error(), "MYELIN_MAX_UPLOAD_SIZE") {
		t.Errorf("a bad MYELIN_MAX_UPLOAD_SIZE gave %v", err)
	}
}

// TestUserDirectoryEnvironment: MYELIN_USER_DIRECTORY_SEARCH_ALL_USERS sets
// user_directory.search_all_users.
func TestUserDirectoryEnvironment(t *testing.T) {
	cfg := Defaults()
	if err := applyEnv(&cfg, envOf(map[string]string{"MYELIN_USER_DIRECTORY_SEARCH_ALL_USERS": "true"})); err != nil {
		t.Fatal(err)
	}
	if !cfg.UserDirectory.SearchAllUsers {
		t.Error("search_all_users not set from the environment")
	}
}

// TestPushEvaluationSetting: notifications.evaluate_push_rules is on by
// default, and MYELIN_NOTIFICATIONS_EVALUATE_PUSH_RULES=false turns it off.
func TestPushEvaluationSetting(t *testing.T) {
	cfg := Defaults()
	if !cfg.Notifications.EvaluatePushRules {
		t.Fatal("push rule evaluation is off by default")
	}
	if err := applyEnv(&cfg, envOf(map[string]string{"MYELIN_NOTIFICATIONS_EVALUATE_PUSH_RULES": "false"})); err != nil {
		t.Fatal(err)
	}
	if cfg.Notifications.EvaluatePushRules {
		t.Error("evaluate_push_rules not turned off from the environment")
	}
}

// TestGuestAccessSetting: allow_guest_access is off by default and set by
// its YAML key (Synapse's too) and MYELIN_ALLOW_GUEST_ACCESS.
func TestGuestAccessSetting(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       bool
	}{
		{"default", "server_name: a.org\n", nil, false},
		{"yaml", "server_name: a.org\nallow_guest_access: true\n", nil, true},
		{"synapse", "server_name: a.org\nreport_stats: false\nallow_guest_access: true\nlisteners: []\n", nil, true},
		{"env", "server_name: a.org\n", map[string]string{"MYELIN_ALLOW_GUEST_ACCESS": "true"}, true},
		{"env wins", "server_name: a.org\nallow_guest_access: true\n", map[string]string{"MYELIN_ALLOW_GUEST_ACCESS": "false"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, _, err := Load(path, envOf(tc.env), false)
			if err != nil || cfg.AllowGuestAccess != tc.want {
				t.Errorf("allow_guest_access = %v, %v; want %v", cfg.AllowGuestAccess, err, tc.want)
			}
		})
	}
}
