package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// registrationTokenValidity serves
// GET /_matrix/client/v1/register/m.login.registration_token/validity
// (registration_tokens.yaml). The route is rate limited per IP, which the
// spec asks for against guessing.
func (a *API) registrationTokenValidity(w http.ResponseWriter, r *http.Request) error {
	if !a.cfg.EnableRegistration {
		return mxerr.Forbidden.With("Registration is not enabled on this homeserver.")
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		return mxerr.MissingParam.With("token is required")
	}
	valid, err := a.users.RegistrationTokenValid(r.Context(), token)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]bool{"valid": valid})
}
