package clientapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type uploadKeysReq struct {
	DeviceKeys   json.RawMessage            `json:"device_keys"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
}

type uploadKeysResp struct {
	OneTimeKeyCounts map[string]int `json:"one_time_key_counts"`
}

// uploadKeys serves POST /_matrix/client/v3/keys/upload (keys.yaml).
func (a *API) uploadKeys(w http.ResponseWriter, r *http.Request) error {
	var req uploadKeysReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	sess := session(r)
	counts, err := a.e2ee.Upload(r.Context(), sess.UserID, sess.DeviceID, req.DeviceKeys, req.OneTimeKeys, req.FallbackKeys)
	if err != nil {
		return err
	}
	return httpx.OK(w, uploadKeysResp{OneTimeKeyCounts: counts})
}

type queryKeysReq struct {
	DeviceKeys map[id.UserID][]id.DeviceID `json:"device_keys"`
}

// queryKeys serves POST /_matrix/client/v3/keys/query (keys.yaml).
func (a *API) queryKeys(w http.ResponseWriter, r *http.Request) error {
	var req queryKeysReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.DeviceKeys == nil {
		return mxerr.MissingParam.With("device_keys is required")
	}
	resp, err := a.e2ee.Query(r.Context(), session(r).UserID, req.DeviceKeys)
	if err != nil {
		return err
	}
	return httpx.OK(w, resp)
}

type claimKeysReq struct {
	OneTimeKeys map[id.UserID]map[id.DeviceID]string `json:"one_time_keys"`
}

type claimKeysResp struct {
	OneTimeKeys any            `json:"one_time_keys"`
	Failures    map[string]any `json:"failures"`
}

// claimKeys serves POST /_matrix/client/v3/keys/claim (keys.yaml): per
// device, a one-time key, else its fallback key.
func (a *API) claimKeys(w http.ResponseWriter, r *http.Request) error {
	var req claimKeysReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.OneTimeKeys == nil {
		return mxerr.MissingParam.With("one_time_keys is required")
	}
	keys, failures, err := a.e2ee.Claim(r.Context(), req.OneTimeKeys, false)
	if err != nil {
		return err
	}
	return httpx.OK(w, claimKeysResp{OneTimeKeys: keys, Failures: failures})
}

type keysChangesResp struct {
	Changed []id.UserID `json:"changed"`
	Left    []id.UserID `json:"left"`
}

// getKeysChanges serves GET /_matrix/client/v3/keys/changes (keys.yaml):
// the users whose device lists changed between two sync tokens.
func (a *API) getKeysChanges(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Get("from") == "" || q.Get("to") == "" {
		return mxerr.MissingParam.With("from and to are required")
	}
	from, err := parseStreamToken(q.Get("from"))
	if err != nil {
		return err
	}
	to, err := parseStreamToken(q.Get("to"))
	if err != nil {
		return err
	}
	changed, left, err := a.e2ee.DeviceListChanges(r.Context(), session(r).UserID, from, to)
	if err != nil {
		return err
	}
	resp := keysChangesResp{Changed: changed, Left: left}
	if resp.Changed == nil {
		resp.Changed = []id.UserID{}
	}
	if resp.Left == nil {
		resp.Left = []id.UserID{}
	}
	return httpx.OK(w, resp)
}
