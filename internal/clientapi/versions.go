package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// getVersions serves GET /_matrix/client/versions (versions.yaml). Only
// spec versions whose required endpoints Myelin serves are listed.
func (a *API) getVersions(w http.ResponseWriter, r *http.Request) error {
	return httpx.OK(w, map[string]any{
		"versions": []string{"r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6",
			"v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"},
		"unstable_features": map[string]bool{},
	})
}
