package clientapi

import (
	"errors"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/presence"
)

// WithPresence adds presence: the /presence endpoints, set_presence on
// /sync and activity on sends. Without it (or with it disabled) the
// endpoints answer as Synapse does with presence off.
func WithPresence(p *presence.Tracker) Option { return func(a *API) { a.presence = p } }

// presenceOn reports whether presence is tracked.
func (a *API) presenceOn() bool { return a.presence != nil && a.presence.Enabled() }

// active records that user did something a person does (sending an event,
// typing, a receipt or read marker), as Synapse's bump_presence_active_time
// does: it keeps them online and brings them back from unavailable.
func (a *API) active(user id.UserID) {
	if a.presence != nil {
		a.presence.Active(user)
	}
}

// setPresence serves PUT /_matrix/client/v3/presence/{userId}/status
// (presence.yaml). Only users themselves may set their presence; with
// presence off the request is checked, accepted and ignored, as in Synapse.
func (a *API) setPresence(w http.ResponseWriter, r *http.Request) error {
	if _, err := pathPresenceUser(r); err != nil {
		return err
	}
	if err := ownUser(r); err != nil {
		return mxerr.Forbidden.With("you can only set your own presence state")
	}
	var body struct {
		Presence  *string `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.Presence == nil {
		return mxerr.BadJSON.With("presence is required")
	}
	if !presence.Valid(*body.Presence) {
		return mxerr.InvalidParam.With("invalid presence state %q", *body.Presence)
	}
	if a.presenceOn() {
		a.presence.Set(session(r).UserID, *body.Presence, body.StatusMsg)
	}
	return httpx.OK(w, struct{}{})
}

// getPresence serves GET /_matrix/client/v3/presence/{userId}/status
// (presence.yaml). As in Synapse, users see the presence of themselves and
// of users sharing a room with them (403 for others), and with presence
// off everyone is offline. A local user who does not exist is 404.
func (a *API) getPresence(w http.ResponseWriter, r *http.Request) error {
	user, err := pathPresenceUser(r)
	if err != nil {
		return err
	}
	if !a.presenceOn() {
		return httpx.OK(w, presence.Status{Presence: presence.Offline})
	}
	if user.Homeserver() == a.cfg.ServerName {
		if _, err := a.users.Get(r.Context(), user); errors.Is(err, mxerr.NotFound) {
			return mxerr.NotFound.With("no such user")
		} else if err != nil {
			return err
		}
	}
	ok, err := a.presence.Visible(r.Context(), session(r).UserID, user)
	if err != nil {
		return err
	}
	if !ok {
		return mxerr.Forbidden.With("you are not allowed to see their presence")
	}
	return httpx.OK(w, a.presence.Get(user))
}

// pathPresenceUser is the {userId} of a presence path; a malformed one is
// 400 M_INVALID_PARAM, as in Synapse.
func pathPresenceUser(r *http.Request) (id.UserID, error) {
	user := id.UserID(r.PathValue("userId"))
	if _, _, err := user.ParseAndValidateRelaxed(); err != nil {
		return "", mxerr.InvalidParam.With("invalid user ID %q", user)
	}
	return user, nil
}
