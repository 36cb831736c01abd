package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

func TestHealthcheckCommand(t *testing.T) {
	s := mxtest.Start(t, "sqlite")
	cfgPath := filepath.Join(t.TempDir(), "homeserver.yaml")
	writeConfig(t, cfgPath, "server_name: localhost\nlisten: "+s.Config.Listen+"\n")

	// A server whose database is gone is unhealthy.
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
	}))
	defer sick.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/health"
	ln.Close()

	for _, tc := range []struct {
		name string
		args []string
		want string // "" for healthy
	}{
		{"url", []string{"--url", s.URL + "/health"}, ""},
		{"listen from config", []string{"--config", cfgPath}, ""},
		{"database down", []string{"--url", sick.URL + "/health"}, "answered 503"},
		{"nothing listening", []string{"--url", closed}, "unhealthy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := healthcheck(tc.args)
			if tc.want == "" && err != nil {
				t.Fatalf("healthcheck: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
