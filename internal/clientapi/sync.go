package clientapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/presence"
)

// maxSyncTimeout caps how long one /sync long-poll may wait.
const maxSyncTimeout = 5 * time.Minute

// sync serves GET /_matrix/client/v3/sync (sync.yaml).
func (a *API) sync(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	q := r.URL.Query()
	req := clientsync.Request{User: sess.UserID, Device: sess.DeviceID}
	if since := q.Get("since"); since != "" {
		t, err := clientsync.ParseToken(since)
		if err != nil {
			return err
		}
		req.Since = &t
	}
	if v := q.Get("timeout"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return mxerr.InvalidParam.With("timeout must be a non-negative integer")
		}
		req.Timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	switch q.Get("full_state") {
	case "", "false":
	case "true":
		req.FullState = true
	default:
		return mxerr.InvalidParam.With("full_state must be true or false")
	}
	switch q.Get("use_state_after") {
	case "", "false":
	case "true":
		req.UseStateAfter = true
	default:
		return mxerr.InvalidParam.With("use_state_after must be true or false")
	}
	setPresence := q.Get("set_presence")
	switch setPresence {
	case "", presence.Online, presence.Offline, presence.Unavailable:
	default:
		return mxerr.InvalidParam.With("set_presence must be online, offline or unavailable")
	}
	f, err := a.syncer.ResolveFilter(r.Context(), sess.UserID, q.Get("filter"))
	if err != nil {
		return err
	}
	req.Filter = f
	if a.presenceOn() {
		// The sync counts as the user being online (unless set_presence
		// says otherwise) until it ends; see presence.Tracker.Syncing.
		defer a.presence.Syncing(sess.UserID, setPresence)()
	}
	resp, err := a.syncer.Sync(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.OK(w, resp)
}
