package clientapi

import (
	"net/http"
	"strings"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// getWellknown serves GET /.well-known/matrix/client (wellknown.yaml) from
// public_baseurl.
func (a *API) getWellknown(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.PublicBaseURL == "" {
		return mxerr.NotFound.With("no public_baseurl is configured")
	}
	return httpx.OK(w, map[string]any{
		"m.homeserver": map[string]string{"base_url": strings.TrimSuffix(a.cfg.PublicBaseURL, "/")},
	})
}
