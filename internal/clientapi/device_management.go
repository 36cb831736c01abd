package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// getDevices is not implemented yet.
func (a *API) getDevices(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getDevice is not implemented yet.
func (a *API) getDevice(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// updateDevice is not implemented yet.
func (a *API) updateDevice(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// deleteDevice is not implemented yet.
func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// deleteDevices is not implemented yet.
func (a *API) deleteDevices(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
