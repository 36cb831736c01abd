package clientapi

import (
	"net/http"
	"time"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/typing"
)

// defaultTypingTimeout applies when a client starts typing without a
// timeout, as in Synapse; typing.MaxTimeout caps the rest.
const defaultTypingTimeout = 30 * time.Second

// setTyping serves PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}
// (typing.yaml). Only a joined user may type, and only for themselves.
func (a *API) setTyping(w http.ResponseWriter, r *http.Request) error {
	if err := ownUser(r); err != nil {
		return err
	}
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.Typing == nil {
		return mxerr.BadJSON.With("typing is required")
	}
	user := session(r).UserID
	if err := a.requireJoined(r.Context(), roomID, user); err != nil {
		return err
	}
	if !*body.Typing {
		a.typing.Stop(r.Context(), roomID, user)
		a.shareEDU(r.Context(), roomID, "m.typing", map[string]any{"room_id": roomID, "user_id": user, "typing": false})
		return httpx.OK(w, httpx.Empty)
	}
	timeout := defaultTypingTimeout
	if body.Timeout != nil {
		if *body.Timeout <= 0 {
			return mxerr.BadJSON.With("timeout must be a positive number of milliseconds")
		}
		timeout = time.Duration(min(*body.Timeout, typing.MaxTimeout.Milliseconds())) * time.Millisecond
	}
	a.typing.Start(r.Context(), roomID, user, timeout)
	a.shareEDU(r.Context(), roomID, "m.typing", map[string]any{"room_id": roomID, "user_id": user, "typing": true})
	a.active(session(r).UserID)
	return httpx.OK(w, httpx.Empty)
}
