package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// joinRoom is not implemented yet.
func (a *API) joinRoom(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// joinRoomById is not implemented yet.
func (a *API) joinRoomById(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// inviteUser is not implemented yet.
func (a *API) inviteUser(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// leaveRoom is not implemented yet.
func (a *API) leaveRoom(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// forgetRoom is not implemented yet.
func (a *API) forgetRoom(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// kick is not implemented yet.
func (a *API) kick(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// ban is not implemented yet.
func (a *API) ban(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// unban is not implemented yet.
func (a *API) unban(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
