package federationapi

import (
	"encoding/json"
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// KeyServer serves the unauthenticated discovery endpoints of the
// server-server API: our keys, the notary queries (keys_query.go),
// /.well-known/matrix/server and the version.
type KeyServer struct {
	Ring *keys.Ring
	// WellKnownServer is served as m.server; empty answers 404.
	WellKnownServer string
	// Version is the software version reported by getVersion.
	Version string
}

// Register adds the key, well-known and version routes to mux, each
// wrapped by the error adapter a.
func (k *KeyServer) Register(mux httpx.Router, a *httpx.Adapter) {
	mux.Handle("GET /_matrix/key/v2/server", a.Wrap(k.getServerKey))
	mux.Handle("GET /_matrix/key/v2/query/{serverName}", a.Wrap(k.perspectivesKeyQuery))
	mux.Handle("POST /_matrix/key/v2/query", a.Wrap(k.bulkPerspectivesKeyQuery))
	mux.Handle("GET /.well-known/matrix/server", a.Wrap(k.getWellKnown))
	mux.Handle("GET /_matrix/federation/v1/version", a.Wrap(k.getVersion))
}

// getServerKey is GET /_matrix/key/v2/server (server-server API,
// "Publishing Keys"): our current key and retired ones, self-signed.
func (k *KeyServer) getServerKey(w http.ResponseWriter, r *http.Request) error {
	raw, err := k.Ring.OwnKeys(r.Context())
	if err != nil {
		return err
	}
	return httpx.OK(w, json.RawMessage(raw))
}

// getWellKnown is GET /.well-known/matrix/server (server-server API,
// "Resolving server names"): the delegated server name, when configured.
func (k *KeyServer) getWellKnown(w http.ResponseWriter, r *http.Request) error {
	if k.WellKnownServer == "" {
		return mxerr.NotFound.With("no federation delegation is configured")
	}
	w.Header().Set("Cache-Control", "max-age=86400")
	return httpx.OK(w, map[string]string{"m.server": k.WellKnownServer})
}

// getVersion is GET /_matrix/federation/v1/version (server-server API,
// "Server implementation").
func (k *KeyServer) getVersion(w http.ResponseWriter, r *http.Request) error {
	return httpx.OK(w, map[string]any{"server": map[string]string{"name": "Myelin", "version": k.Version}})
}
