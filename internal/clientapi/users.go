package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/userdir"
)

// WithUserDirectory serves user directory searches from d.
func WithUserDirectory(d *userdir.Service) Option { return func(a *API) { a.userdir = d } }

// maxDirectoryLimit caps the results of one search, as Synapse does.
const maxDirectoryLimit = 50

// searchUserDirectory serves POST /_matrix/client/v3/user_directory/search
// (users.yaml): the users the requester may find whose display name or
// user ID has words starting with those of search_term.
func (a *API) searchUserDirectory(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int    `json:"limit"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.SearchTerm == nil {
		return mxerr.MissingParam.With("search_term is required")
	}
	limit := 10
	if req.Limit != nil {
		limit = min(max(*req.Limit, 0), maxDirectoryLimit)
	}
	results, limited, err := a.userdir.Search(r.Context(), session(r).UserID, *req.SearchTerm, limit)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"results": results, "limited": limited})
}
