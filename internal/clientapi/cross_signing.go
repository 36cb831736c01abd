package clientapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
)

type uploadCrossSigningKeysReq struct {
	MasterKey      json.RawMessage `json:"master_key"`
	SelfSigningKey json.RawMessage `json:"self_signing_key"`
	UserSigningKey json.RawMessage `json:"user_signing_key"`
	Auth           *authDict       `json:"auth"`
}

// uploadCrossSigningKeys serves POST
// /_matrix/client/v3/keys/device_signing/upload (cross_signing.yaml).
// User-Interactive Auth (the user's password) is required unless the user
// has no master key yet or the request changes no key.
func (a *API) uploadCrossSigningKeys(w http.ResponseWriter, r *http.Request) error {
	var req uploadCrossSigningKeysReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	keys := map[string]json.RawMessage{}
	for typ, raw := range map[string]json.RawMessage{"master": req.MasterKey, "self_signing": req.SelfSigningKey, "user_signing": req.UserSigningKey} {
		if len(raw) > 0 && string(raw) != "null" {
			keys[typ] = raw
		}
	}
	sess := session(r)
	needsAuth, err := a.e2ee.CrossSigningNeedsAuth(r.Context(), sess.UserID, keys)
	if err != nil {
		return err
	}
	uiaID := ""
	if needsAuth {
		uia, done, err := a.interactiveAuth(w, r, uiaCall{
			purpose: "device_signing_upload", user: sess.UserID, flows: passwordFlows, auth: req.Auth,
		})
		if err != nil || !done {
			return err
		}
		uiaID = uia.id
	}
	if err := a.e2ee.UploadCrossSigning(r.Context(), sess.UserID, keys); err != nil {
		return err
	}
	if uiaID != "" {
		a.uia.finish(uiaID)
	}
	return httpx.OK(w, httpx.Empty)
}

type uploadSignaturesResp struct {
	Failures map[id.UserID]map[string]any `json:"failures"`
}

// uploadCrossSigningSignatures serves POST
// /_matrix/client/v3/keys/signatures/upload (cross_signing.yaml).
func (a *API) uploadCrossSigningSignatures(w http.ResponseWriter, r *http.Request) error {
	var req map[id.UserID]map[string]json.RawMessage
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	failures, err := a.e2ee.UploadSignatures(r.Context(), session(r).UserID, req)
	if err != nil {
		return err
	}
	return httpx.OK(w, uploadSignaturesResp{Failures: failures})
}
