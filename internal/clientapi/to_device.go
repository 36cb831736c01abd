package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type sendToDeviceReq struct {
	Messages e2ee.ToDeviceMessages `json:"messages"`
}

// sendToDevice serves PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}
// (to_device.yaml). A repeated transaction ID of the device is a no-op.
func (a *API) sendToDevice(w http.ResponseWriter, r *http.Request) error {
	var req sendToDeviceReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Messages == nil {
		return mxerr.MissingParam.With("messages is required")
	}
	sess := session(r)
	if err := a.e2ee.SendToDevice(r.Context(), sess.UserID, sess.DeviceID, r.PathValue("txnId"), r.PathValue("eventType"), req.Messages); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}
