package federationapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// userKeysQuery serves POST /_matrix/federation/v1/user/keys/query
// (user_keys.yaml): keys of this server's users only.
func (a *API) userKeysQuery(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.DeviceKeys == nil {
		return mxerr.MissingParam.With("device_keys is required")
	}
	resp, err := a.e2ee.Query(r.Context(), "", req.DeviceKeys)
	if err != nil {
		return err
	}
	// No failures (only this server's users are answered) and no
	// user-signing keys, which only their owner sees.
	return httpx.OK(w, struct {
		DeviceKeys      map[id.UserID]map[id.DeviceID]json.RawMessage `json:"device_keys"`
		MasterKeys      map[id.UserID]json.RawMessage                 `json:"master_keys,omitempty"`
		SelfSigningKeys map[id.UserID]json.RawMessage                 `json:"self_signing_keys,omitempty"`
	}{resp.DeviceKeys, resp.MasterKeys, resp.SelfSigningKeys})
}

// userKeysClaim serves POST /_matrix/federation/v1/user/keys/claim
// (user_keys.yaml).
func (a *API) userKeysClaim(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		OneTimeKeys map[id.UserID]map[id.DeviceID]string `json:"one_time_keys"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.OneTimeKeys == nil {
		return mxerr.MissingParam.With("one_time_keys is required")
	}
	keys, _, err := a.e2ee.Claim(r.Context(), req.OneTimeKeys, true)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"one_time_keys": keys})
}
