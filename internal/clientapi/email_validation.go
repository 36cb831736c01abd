package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// The pages a validation mail leads to. They are Myelin's own, not the
// spec's (which leaves validation to the homeserver), under /_myelin as
// Synapse's are under /_synapse.
const (
	emailValidatePath = "/_myelin/client/email/validate"
	emailSubmitPath   = "/_myelin/client/email/submit_token"
)

// validateEmailLink serves GET /_myelin/client/email/validate, the link of
// a validation mail: it validates the session and says so in a page. A
// link that is not (or no longer) valid gets the Matrix error, as every
// endpoint does.
func (a *API) validateEmailLink(w http.ResponseWriter, r *http.Request) error {
	if a.threepids == nil {
		return mxerr.ThreepidAuthFailed.With("e-mail validation is not enabled")
	}
	q := r.URL.Query()
	if err := a.threepids.Validate(r.Context(), q.Get("sid"), q.Get("client_secret"), q.Get("token")); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	_, _ = w.Write([]byte("<!doctype html><meta charset=utf-8><title>E-mail validation</title>" +
		"<p>Your e-mail address has been validated. Return to your client to continue.\n"))
	return nil
}

type submitTokenReq struct {
	SID          string `json:"sid"`
	ClientSecret string `json:"client_secret"`
	Token        string `json:"token"`
}

// submitEmailToken serves POST /_myelin/client/email/submit_token, the
// submit_url of the requestToken answers: the code typed from the mail,
// with the parameters of the identity service's submitToken.
func (a *API) submitEmailToken(w http.ResponseWriter, r *http.Request) error {
	var req submitTokenReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.SID == "" || req.ClientSecret == "" || req.Token == "" {
		return mxerr.MissingParam.With("sid, client_secret and token are required")
	}
	if a.threepids == nil {
		return mxerr.ThreepidAuthFailed.With("e-mail validation is not enabled")
	}
	if err := a.threepids.Validate(r.Context(), req.SID, req.ClientSecret, req.Token); err != nil {
		return err
	}
	return httpx.OK(w, map[string]bool{"success": true})
}
