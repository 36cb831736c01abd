package adminapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/myelin-chat/myelin/internal/config"
)

func TestNoncesExpireAndAreSingleUse(t *testing.T) {
	cfg := &config.Config{RegistrationSharedSecret: "s"}
	a := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	reg := newSharedSecretRegistration(a)
	now := time.Unix(1_700_000_000, 0)
	reg.now = func() time.Time { return now }

	get := func() string {
		t.Helper()
		w := httptest.NewRecorder()
		if err := reg.getNonce(w, httptest.NewRequest("GET", "/_synapse/admin/v1/register", nil)); err != nil {
			t.Fatalf("getNonce: %v", err)
		}
		var body struct{ Nonce string }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Nonce == "" {
			t.Fatalf("getNonce body %q: %v", w.Body.String(), err)
		}
		return body.Nonce
	}

	fresh := get()
	if !reg.takeNonce(fresh) {
		t.Error("fresh nonce rejected")
	}
	if reg.takeNonce(fresh) {
		t.Error("nonce accepted twice")
	}

	old := get()
	young := get()
	now = now.Add(59 * time.Second)
	if !reg.takeNonce(young) {
		t.Error("59 s old nonce rejected")
	}
	now = now.Add(2 * time.Second)
	if reg.takeNonce(old) {
		t.Error("61 s old nonce accepted")
	}
	if len(reg.nonces) != 0 {
		t.Errorf("%d nonces left after expiry, want 0", len(reg.nonces))
	}
}
