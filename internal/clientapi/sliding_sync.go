package clientapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/presence"
	"github.com/myelin-chat/myelin/internal/slidingsync"
)

// slidingSyncRequest serves POST
// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync (MSC4186,
// simplified sliding sync; no OpenAPI file yet): pos, timeout and
// set_presence in the query (or, as the MSC's later revision has them, in
// the body), the lists, subscriptions and extensions in the body.
func (a *API) slidingSyncRequest(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	req := slidingsync.Request{User: sess.UserID, Device: sess.DeviceID}
	if err := httpx.DecodeJSON(r, &req.Body); err != nil {
		return err
	}
	q := r.URL.Query()
	req.Pos = req.Body.Pos
	if q.Has("pos") {
		req.Pos = q.Get("pos")
	}
	if req.Body.Timeout != nil && *req.Body.Timeout > 0 {
		req.Timeout = min(time.Duration(*req.Body.Timeout)*time.Millisecond, maxSyncTimeout)
	}
	if v := q.Get("timeout"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return mxerr.InvalidParam.With("timeout must be a non-negative integer")
		}
		req.Timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	if q.Has("set_presence") {
		req.Body.SetPresence = q.Get("set_presence")
	}
	switch req.Body.SetPresence {
	case "", presence.Online, presence.Offline, presence.Unavailable:
	default:
		return mxerr.InvalidParam.With("set_presence must be online, offline or unavailable")
	}
	if a.presenceOn() {
		// As /sync: the request counts as the user being online (unless
		// set_presence says otherwise) until it ends.
		defer a.presence.Syncing(sess.UserID, req.Body.SetPresence)()
	}
	resp, err := a.slidingSync.Sync(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.OK(w, resp)
}
