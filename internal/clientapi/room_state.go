package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// setRoomStateWithKey is not implemented yet.
func (a *API) setRoomStateWithKey(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
