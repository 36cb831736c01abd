package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// getRoomIdByAlias is not implemented yet.
func (a *API) getRoomIdByAlias(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// setRoomAlias is not implemented yet.
func (a *API) setRoomAlias(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// deleteRoomAlias is not implemented yet.
func (a *API) deleteRoomAlias(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getLocalAliases is not implemented yet.
func (a *API) getLocalAliases(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
