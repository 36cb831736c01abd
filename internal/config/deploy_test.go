package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeployEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name          string
		env           map[string]string
		wantWellKnown string
		wantErr       string
	}{
		{name: "well-known from public host", env: map[string]string{
			"MYELIN_SERVE_WELLKNOWN": "true", "MYELIN_PUBLIC_BASEURL": "https://matrix.example.org/"},
			wantWellKnown: "matrix.example.org:443"},
		{name: "public URL with a port", env: map[string]string{
			"MYELIN_SERVE_WELLKNOWN": "1", "MYELIN_PUBLIC_BASEURL": "https://matrix.example.org:8443"},
			wantWellKnown: "matrix.example.org:8443"},
		{name: "explicit delegation wins", env: map[string]string{
			"MYELIN_SERVE_WELLKNOWN": "true", "MYELIN_PUBLIC_BASEURL": "https://matrix.example.org/",
			"MYELIN_WELL_KNOWN_SERVER": "fed.example.org:8448"},
			wantWellKnown: "fed.example.org:8448"},
		{name: "off", env: map[string]string{"MYELIN_PUBLIC_BASEURL": "https://matrix.example.org/"}},
		{name: "well-known without public URL", env: map[string]string{"MYELIN_SERVE_WELLKNOWN": "true"},
			wantErr: "serve_server_wellknown (MYELIN_SERVE_WELLKNOWN) needs public_baseurl"},
		{name: "bad boolean", env: map[string]string{"MYELIN_SERVE_WELLKNOWN": "sure"},
			wantErr: `MYELIN_SERVE_WELLKNOWN="sure": want true or false`},
		{name: "bad public URL", env: map[string]string{"MYELIN_PUBLIC_BASEURL": "matrix.example.org"},
			wantErr: "public_baseurl \"matrix.example.org\" must be an http(s) URL"},
		{name: "admin without password", env: map[string]string{"MYELIN_ADMIN_USER": "admin"},
			wantErr: "MYELIN_ADMIN_USER and MYELIN_ADMIN_PASSWORD must be set together"},
		{name: "admin", env: map[string]string{"MYELIN_ADMIN_USER": "@admin:example.org", "MYELIN_ADMIN_PASSWORD": "pw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.env["MYELIN_DATA_DIR"] = dir
			tc.env["MYELIN_SERVER_NAME"] = "example.org"
			cfg, _, err := Load("", envOf(tc.env), true)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Federation.WellKnownServer != tc.wantWellKnown {
				t.Fatalf("well_known_server = %q, want %q", cfg.Federation.WellKnownServer, tc.wantWellKnown)
			}
			if tc.env["MYELIN_ADMIN_USER"] != "" && cfg.AdminLocalpart() != "admin" {
				t.Fatalf("admin localpart = %q", cfg.AdminLocalpart())
			}
			// Derived and secret values stay out of the written file, so a
			// later change of the environment takes effect.
			raw, err := os.ReadFile(filepath.Join(dir, "homeserver.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), "well_known_server: matrix") || strings.Contains(string(raw), "@admin:example.org") || strings.Contains(string(raw), ": pw\n") {
				t.Fatalf("written config holds derived or secret values:\n%s", raw)
			}
		})
	}
}
