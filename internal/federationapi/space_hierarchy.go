package federationapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/spaces"
)

// WithSpaces serves the federation hierarchy endpoint from sp; nil leaves
// it unregistered.
func WithSpaces(sp *spaces.Service) Option { return func(a *API) { a.spaces = sp } }

// getSpaceHierarchy handles GET /_matrix/federation/v1/hierarchy/{roomId}
// (space_hierarchy.yaml): the room and its children, judged for the
// requesting server. A server the room's ACL denies is refused.
func (a *API) getSpaceHierarchy(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var suggested bool
	switch r.URL.Query().Get("suggested_only") {
	case "", "false":
	case "true":
		suggested = true
	default:
		return mxerr.InvalidParam.With("suggested_only must be true or false")
	}
	origin := Origin(ctx)
	if err := a.checkACL(ctx, roomID, origin); err != nil {
		return err
	}
	resp, err := a.spaces.ServeFederation(ctx, roomID, origin, suggested)
	if err != nil {
		return err
	}
	return httpx.OK(w, resp)
}
