package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// getAccountData is not implemented yet.
func (a *API) getAccountData(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// setAccountData is not implemented yet.
func (a *API) setAccountData(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getAccountDataPerRoom is not implemented yet.
func (a *API) getAccountDataPerRoom(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// setAccountDataPerRoom is not implemented yet.
func (a *API) setAccountDataPerRoom(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
