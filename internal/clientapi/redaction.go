package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// redactEvent is not implemented yet.
func (a *API) redactEvent(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
