// Package adminapi serves the Synapse-compatible admin endpoints under
// /_synapse/admin, starting with shared-secret registration.
//
// It calls users for accounts; it is imported only by homeserver.
package adminapi

import (
	"log/slog"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/users"
)

// API holds the admin handlers' dependencies.
type API struct {
	cfg   *config.Config
	log   *slog.Logger
	users *users.Service
	http  *httpx.Adapter
}

// New returns the admin API.
func New(cfg *config.Config, log *slog.Logger, u *users.Service) *API {
	return &API{cfg: cfg, log: log, users: u, http: &httpx.Adapter{Log: log}}
}

// Register adds the admin routes to mux.
func (a *API) Register(mux httpx.Router) {
	reg := newSharedSecretRegistration(a)
	mux.Handle("GET /_synapse/admin/v1/register", a.http.Wrap(reg.getNonce))
	mux.Handle("POST /_synapse/admin/v1/register", a.http.Wrap(reg.register))
}
