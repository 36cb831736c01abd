package clientapi

import (
	"net/http"
	"time"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type loginTokenReq struct {
	Auth *authDict `json:"auth"`
}

type loginTokenResp struct {
	LoginToken  string `json:"login_token"`
	ExpiresInMS int64  `json:"expires_in_ms"`
}

// generateLoginToken serves POST /_matrix/client/v1/login/get_token
// (login_token.yaml): a one-time token with which another device logs in
// as this user (m.login.token). The spec makes every call ask for the
// user's password again, so each new device is consented to. With
// login_via_existing_session off the endpoint is not offered, as in
// Synapse.
func (a *API) generateLoginToken(w http.ResponseWriter, r *http.Request) error {
	cfg := a.cfg.Sessions.LoginViaExistingSession
	if !cfg.Enabled {
		return mxerr.Unrecognized.With("login via an existing session is not enabled on this server")
	}
	var req loginTokenReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	sess := session(r)
	uia, done, err := a.interactiveAuth(w, r, uiaCall{purpose: "login_token", user: sess.UserID, flows: passwordFlows, auth: req.Auth})
	if err != nil || !done {
		return err
	}
	ttl := time.Duration(cfg.TokenTimeout)
	token, err := a.users.CreateLoginToken(r.Context(), sess.UserID, ttl)
	if err != nil {
		return err
	}
	a.uia.finish(uia.id)
	return httpx.OK(w, loginTokenResp{LoginToken: token, ExpiresInMS: ttl.Milliseconds()})
}
