package clientapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pushers"
)

// WithPushers serves the pusher endpoints (pusher.yaml) from p; the
// homeserver always passes it.
func WithPushers(p *pushers.Service) Option { return func(a *API) { a.pushers = p } }

// postPusherReq is the body of POST /pushers/set. Kind is raw so that a
// null (delete) differs from a missing kind.
type postPusherReq struct {
	Kind              json.RawMessage `json:"kind"`
	AppID             *string         `json:"app_id"`
	PushKey           *string         `json:"pushkey"`
	AppDisplayName    *string         `json:"app_display_name"`
	DeviceDisplayName *string         `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Lang              *string         `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Append            bool            `json:"append"`
}

// getPushers serves GET /_matrix/client/v3/pushers (pusher.yaml): the
// requesting user's pushers, on every device.
func (a *API) getPushers(w http.ResponseWriter, r *http.Request) error {
	if a.pushers == nil {
		return mxerr.Unrecognized.With("pushers are not supported")
	}
	list, err := a.pushers.List(r.Context(), session(r).UserID)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"pushers": list})
}

// postPusher serves POST /_matrix/client/v3/pushers/set (pusher.yaml):
// kind null deletes the user's pusher of app_id and pushkey; any other
// kind creates or updates it, owned by the requesting device.
func (a *API) postPusher(w http.ResponseWriter, r *http.Request) error {
	if a.pushers == nil {
		return mxerr.Unrecognized.With("pushers are not supported")
	}
	var req postPusherReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	var missing []string
	if req.Kind == nil {
		missing = append(missing, "kind")
	}
	if req.AppID == nil {
		missing = append(missing, "app_id")
	}
	if req.PushKey == nil {
		missing = append(missing, "pushkey")
	}
	if len(missing) > 0 {
		return mxerr.MissingParam.With("missing parameters: %s", strings.Join(missing, ", "))
	}
	sess := session(r)
	if string(req.Kind) == "null" {
		if err := a.pushers.Delete(r.Context(), sess.UserID, *req.AppID, *req.PushKey); err != nil {
			return err
		}
		return httpx.OK(w, httpx.Empty)
	}
	var kind string
	if err := json.Unmarshal(req.Kind, &kind); err != nil {
		return mxerr.BadJSON.With("kind must be a string or null")
	}
	if req.AppDisplayName == nil {
		missing = append(missing, "app_display_name")
	}
	if req.DeviceDisplayName == nil {
		missing = append(missing, "device_display_name")
	}
	if req.Lang == nil {
		missing = append(missing, "lang")
	}
	if req.Data == nil || string(req.Data) == "null" {
		missing = append(missing, "data")
	}
	if len(missing) > 0 {
		return mxerr.MissingParam.With("missing parameters: %s", strings.Join(missing, ", "))
	}
	if !strings.HasPrefix(strings.TrimSpace(string(req.Data)), "{") {
		return mxerr.BadJSON.With("data must be an object")
	}
	p := pushers.Pusher{
		Kind: kind, AppID: *req.AppID, PushKey: *req.PushKey,
		AppDisplayName: *req.AppDisplayName, DeviceDisplayName: *req.DeviceDisplayName,
		ProfileTag: req.ProfileTag, Lang: *req.Lang, Data: req.Data,
	}
	if err := a.pushers.Set(r.Context(), sess.UserID, sess.DeviceID, p, req.Append); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}
