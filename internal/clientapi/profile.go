package clientapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/users"
)

// profileOf loads the profile of the path's user: from the accounts of
// this server, or over federation (query/profile) for a user of another
// server, asking only for field when it is not empty.
func (a *API) profileOf(r *http.Request, field string) (id.UserID, map[string]any, error) {
	user := id.UserID(r.PathValue("userId"))
	if _, _, err := user.Parse(); err != nil {
		return "", nil, mxerr.InvalidParam.With("invalid user ID")
	}
	if !a.users.IsLocal(user) {
		if a.handshake == nil {
			return "", nil, mxerr.NotFound.With("profile not found")
		}
		p, err := a.handshake.QueryProfile(r.Context(), user, field)
		return user, p, err
	}
	fields, err := a.users.Profile(r.Context(), user)
	if err != nil {
		return "", nil, err
	}
	p := make(map[string]any, len(fields))
	for k, v := range fields {
		p[k] = v
	}
	return user, p, nil
}

// getUserProfile serves GET /_matrix/client/v3/profile/{userId} (profile.yaml).
func (a *API) getUserProfile(w http.ResponseWriter, r *http.Request) error {
	_, p, err := a.profileOf(r, "")
	if err != nil {
		return err
	}
	return httpx.OK(w, p)
}

// getProfileField serves GET /_matrix/client/v3/profile/{userId}/{keyName}.
func (a *API) getProfileField(w http.ResponseWriter, r *http.Request) error {
	key := r.PathValue("keyName")
	_, p, err := a.profileOf(r, key)
	if err != nil {
		return err
	}
	v, ok := p[key]
	if !ok {
		return mxerr.NotFound.With("profile field %s not set", key)
	}
	return httpx.OK(w, map[string]any{key: v})
}

// setProfileField serves PUT /_matrix/client/v3/profile/{userId}/{keyName}
// (profile.yaml): displayname and avatar_url also update the member event
// of every room the user is joined to; m.tz and custom fields (spec v1.16)
// are stored as given.
func (a *API) setProfileField(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	key, err := ownProfileKey(r)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	raw, ok := body[key]
	if !ok {
		return mxerr.MissingParam.With("the body has no %s", key)
	}
	if key != "displayname" && key != "avatar_url" {
		if key == "m.tz" && string(raw) != "null" {
			var tz string
			if err := httpx.Unmarshal(raw, &tz); err != nil {
				return mxerr.BadJSON.With("m.tz must be a string")
			}
		}
		if err := a.users.SetProfileField(r.Context(), sess.UserID, key, raw); err != nil {
			return err
		}
		return httpx.OK(w, httpx.Empty)
	}
	var value string
	if string(raw) != "null" {
		if err := httpx.Unmarshal(raw, &value); err != nil {
			return mxerr.BadJSON.With("%s must be a string without NUL characters", key)
		}
	}
	if len(value) > 256 && key == "displayname" {
		return mxerr.BadJSON.With("displayname is too long")
	}
	return a.changeProfile(w, r, key, value)
}

// ownProfileKey returns the path's profile field, which the requester
// may change only in their own profile.
func ownProfileKey(r *http.Request) (string, error) {
	if id.UserID(r.PathValue("userId")) != session(r).UserID {
		return "", mxerr.Forbidden.With("you may only change your own profile")
	}
	key := r.PathValue("keyName")
	return key, users.ValidateProfileKey(key)
}

// deleteProfileField serves DELETE /_matrix/client/v3/profile/{userId}/{keyName}
// (profile.yaml, spec v1.16). Deleting displayname or avatar_url clears it
// in the user's member events too.
func (a *API) deleteProfileField(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	key, err := ownProfileKey(r)
	if err != nil {
		return err
	}
	if key == "displayname" || key == "avatar_url" {
		return a.changeProfile(w, r, key, "")
	}
	if err := a.users.DeleteProfileField(r.Context(), sess.UserID, key); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// changeProfile sets displayname or avatar_url ("" clears it) and updates
// the user's member events.
func (a *API) changeProfile(w http.ResponseWriter, r *http.Request, key, value string) error {
	sess := session(r)
	var dn, av *string
	if key == "displayname" {
		dn = &value
	} else {
		av = &value
	}
	if err := a.users.SetProfile(r.Context(), sess.UserID, dn, av); err != nil {
		return err
	}
	if err := a.propagateProfile(r, sess.UserID); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// propagateProfile sends a fresh join event carrying the new profile to
// every room the user is joined to.
func (a *API) propagateProfile(r *http.Request, user id.UserID) error {
	ms, err := a.rooms.LocalMemberships(r.Context(), user, 0)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		if _, err := a.sendMembership(r.Context(), user, m.RoomID, user, "join", "", nil); err != nil {
			a.log.Warn("updating member event after profile change", "room_id", m.RoomID, "user_id", user, "err", err)
		}
	}
	return nil
}
