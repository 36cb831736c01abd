package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifications"
	"github.com/myelin-chat/myelin/internal/room"
)

// WithNotifications serves GET /notifications from the push rule
// evaluation's records.
func WithNotifications(n *notifications.Service) Option { return func(a *API) { a.notifications = n } }

// notificationResp is one entry of GET /notifications.
type notificationResp struct {
	Actions json.RawMessage  `json:"actions"`
	Event   room.ClientEvent `json:"event"`
	Read    bool             `json:"read"`
	RoomID  id.RoomID        `json:"room_id"`
	TS      int64            `json:"ts"`
}

// getNotifications serves GET /_matrix/client/v3/notifications
// (notifications.yaml): the caller's notifications, newest first. The
// token is the stream position of the last one returned; limit defaults
// to 50 as in Synapse. profile_tag is never set: rules carry none.
func (a *API) getNotifications(w http.ResponseWriter, r *http.Request) error {
	if a.notifications == nil {
		return mxerr.Unrecognized.With("notifications are not enabled")
	}
	sess := session(r)
	q := r.URL.Query()
	var from int64
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return mxerr.InvalidParam.With("from must be a token from next_token")
		}
		from = n
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return mxerr.InvalidParam.With("limit must be a non-negative integer")
		}
		limit = min(n, 1000)
	}
	only := q.Get("only")
	list, err := a.notifications.List(r.Context(), sess.UserID, from, limit+1, only == "highlight")
	if err != nil {
		return err
	}
	more := len(list) > limit
	if more {
		list = list[:limit]
	}
	ids := make([]id.EventID, len(list))
	for i, n := range list {
		ids[i] = n.EventID
	}
	evs, err := a.rooms.Events(r.Context(), ids)
	if err != nil {
		return err
	}
	byID := make(map[id.EventID]*room.Stored, len(evs))
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	var held []*room.Stored
	for _, n := range list {
		if ev := byID[n.EventID]; ev != nil {
			held = append(held, ev)
		}
	}
	formatted := a.rooms.FormatAll(r.Context(), held, room.Viewer{User: sess.UserID, Device: sess.DeviceID}, false)
	byEvent := make(map[id.EventID]room.ClientEvent, len(formatted))
	for _, f := range formatted {
		byEvent[f.EventID] = f
	}
	out := struct {
		NextToken     string             `json:"next_token,omitempty"`
		Notifications []notificationResp `json:"notifications"`
	}{Notifications: []notificationResp{}}
	for _, n := range list {
		ev, ok := byEvent[n.EventID]
		if !ok {
			continue
		}
		out.Notifications = append(out.Notifications, notificationResp{Actions: n.Actions, Event: ev, Read: n.Read, RoomID: n.RoomID, TS: n.TS})
	}
	if more && len(list) > 0 {
		out.NextToken = strconv.FormatInt(list[len(list)-1].StreamPos, 10)
	}
	return httpx.OK(w, out)
}
