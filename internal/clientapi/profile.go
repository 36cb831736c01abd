package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// getUserProfile is not implemented yet.
func (a *API) getUserProfile(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getProfileField is not implemented yet.
func (a *API) getProfileField(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// setProfileField is not implemented yet.
func (a *API) setProfileField(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
