package clientapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/slidingsync"
)

// slidingSyncRequest serves POST
// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync (MSC4186,
// simplified sliding sync; no OpenAPI file yet): pos, timeout and
// set_presence in the query, the lists, subscriptions and extensions in
// the body.
func (a *API) slidingSyncRequest(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	q := r.URL.Query()
	req := slidingsync.Request{User: sess.UserID, Device: sess.DeviceID, Pos: q.Get("pos")}
	if v := q.Get("timeout"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return mxerr.InvalidParam.With("timeout must be a non-negative integer")
		}
		req.Timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	switch q.Get("set_presence") {
	case "", "online", "offline", "unavailable":
		// Presence is not served yet: accepted, and changes nothing.
	default:
		return mxerr.InvalidParam.With("set_presence must be online, offline or unavailable")
	}
	if err := httpx.DecodeJSON(r, &req.Body); err != nil {
		return err
	}
	resp, err := a.slidingSync.Sync(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.OK(w, resp)
}
