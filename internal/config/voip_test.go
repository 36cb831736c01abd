package config

import (
	"os"
	"slices"
	"testing"
	"time"
)

// TestTURNSettings checks the turn_* keys of a Synapse homeserver.yaml and
// the MYELIN_TURN_* variables, which win.
func TestTURNSettings(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/homeserver.yaml"
	yml := "server_name: example.org\nreport_stats: false\nturn_uris: [\"turn:a.example.org\"]\nturn_shared_secret: s3\nturn_user_lifetime: 1d\nturn_allow_guests: true\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MYELIN_DATA_DIR": dir}
	cfg, _, err := Load(path, envOf(env), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.TURN.URIs, []string{"turn:a.example.org"}) || cfg.TURN.SharedSecret != "s3" || time.Duration(cfg.TURN.UserLifetime) != 24*time.Hour {
		t.Errorf("synapse keys: %+v", cfg.TURN)
	}
	env["MYELIN_TURN_URIS"] = "turn:b.example.org, turns:c.example.org"
	env["MYELIN_TURN_SHARED_SECRET"] = "env-secret"
	env["MYELIN_TURN_USER_LIFETIME"] = "30m"
	cfg, _, err = Load(path, envOf(env), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.TURN.URIs, []string{"turn:b.example.org", "turns:c.example.org"}) || cfg.TURN.SharedSecret != "env-secret" || time.Duration(cfg.TURN.UserLifetime) != 30*time.Minute {
		t.Errorf("env: %+v", cfg.TURN)
	}
	if d := Defaults(); time.Duration(d.TURN.UserLifetime) != time.Hour || d.TURN.Configured() {
		t.Errorf("defaults: %+v", d.TURN)
	}
	env["MYELIN_TURN_USER_LIFETIME"] = "soon"
	if _, _, err := Load(path, envOf(env), false); err == nil {
		t.Error("a bad MYELIN_TURN_USER_LIFETIME was accepted")
	}
}

// TestSupportSettings checks the support section and MYELIN_SUPPORT_PAGE.
func TestSupportSettings(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/config.yaml"
	write := func(yml string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("server_name: example.org\n"+yml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"MYELIN_DATA_DIR": dir}
	write("support:\n  contacts:\n    - matrix_id: \"@admin:example.org\"\n      role: m.role.admin\n    - email_address: sec@example.org\n      role: m.role.security\n")
	cfg, _, err := Load(path, envOf(env), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Support.Contacts) != 2 || cfg.Support.Contacts[1].EmailAddress != "sec@example.org" || !cfg.Support.Configured() {
		t.Errorf("contacts: %+v", cfg.Support)
	}
	env["MYELIN_SUPPORT_PAGE"] = "https://example.org/help"
	if cfg, _, err = Load(path, envOf(env), false); err != nil || cfg.Support.SupportPage != "https://example.org/help" {
		t.Errorf("MYELIN_SUPPORT_PAGE: %v %+v", err, cfg.Support)
	}
	delete(env, "MYELIN_SUPPORT_PAGE")
	for _, bad := range []string{
		"support:\n  contacts:\n    - matrix_id: \"@admin:example.org\"\n",
		"support:\n  contacts:\n    - role: m.role.admin\n",
		"support:\n  contacts:\n    - matrix_id: admin\n      role: m.role.admin\n",
		"support:\n  support_page: not a url\n",
	} {
		write(bad)
		if _, _, err := Load(path, envOf(env), false); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
