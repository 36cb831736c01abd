package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type supportResp struct {
	Contacts    []config.SupportContact `json:"contacts,omitempty"`
	SupportPage string                  `json:"support_page,omitempty"`
}

// getWellknownSupport serves GET /.well-known/matrix/support
// (support.yaml) from the support settings; 404 when none are set.
func (a *API) getWellknownSupport(w http.ResponseWriter, r *http.Request) error {
	s := a.cfg.Support
	if !s.Configured() {
		return mxerr.NotFound.With("no support information is configured")
	}
	return httpx.OK(w, supportResp{Contacts: s.Contacts, SupportPage: s.SupportPage})
}
