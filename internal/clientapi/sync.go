package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// sync is not implemented yet.
func (a *API) sync(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
