package clientapi

import (
	"net/http"
	"time"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type openIDTokenResp struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

// requestOpenIdToken serves POST
// /_matrix/client/v3/user/{userId}/openid/request_token (openid.yaml): a
// token a third party (an integration manager, a widget) exchanges at
// /_matrix/federation/v1/openid/userinfo to learn who the user is.
func (a *API) requestOpenIdToken(w http.ResponseWriter, r *http.Request) error {
	var body map[string]any
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	sess := session(r)
	if r.PathValue("userId") != sess.UserID.String() {
		return mxerr.Forbidden.With("cannot request an OpenID token for another user")
	}
	token, ttl, err := a.users.CreateOpenIDToken(r.Context(), sess.UserID)
	if err != nil {
		return err
	}
	return httpx.OK(w, openIDTokenResp{
		AccessToken: token, TokenType: "Bearer", MatrixServerName: a.cfg.ServerName, ExpiresIn: int64(ttl / time.Second),
	})
}
