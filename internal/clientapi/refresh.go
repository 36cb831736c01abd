package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type refreshReq struct {
	RefreshToken *string `json:"refresh_token"`
}

type refreshResp struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresInMS  int64  `json:"expires_in_ms,omitempty"`
}

// refresh serves POST /_matrix/client/v3/refresh (refresh.yaml): a
// refresh token buys a new access token and refresh token. It needs no
// access token; an unknown, spent or expired refresh token is 401
// M_UNKNOWN_TOKEN, and the client logs in again.
func (a *API) refresh(w http.ResponseWriter, r *http.Request) error {
	var req refreshReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.RefreshToken == nil {
		return mxerr.MissingParam.With("refresh_token is required")
	}
	t, err := a.users.Refresh(r.Context(), *req.RefreshToken)
	if err != nil {
		return err
	}
	return httpx.OK(w, refreshResp{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, ExpiresInMS: t.ExpiresIn.Milliseconds()})
}
