package federationapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type openIDUserInfoResp struct {
	Sub id.UserID `json:"sub"`
}

// exchangeOpenIdToken serves GET /_matrix/federation/v1/openid/userinfo
// (server-server openid.yaml). It is not X-Matrix authenticated: its
// callers are services, not servers, and the OpenID token is the
// credential.
func (a *API) exchangeOpenIdToken(w http.ResponseWriter, r *http.Request) error {
	token := r.URL.Query().Get("access_token")
	if token == "" {
		return mxerr.MissingToken.With("access_token is required")
	}
	user, err := a.users.OpenIDTokenOwner(r.Context(), token)
	if err != nil {
		return err
	}
	return httpx.OK(w, openIDUserInfoResp{Sub: user})
}
