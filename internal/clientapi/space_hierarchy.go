package clientapi

import (
	"net/http"
	"strconv"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/spaces"
)

// WithSpaces serves the space hierarchy and room summaries from sp; nil
// leaves those routes unregistered.
func WithSpaces(sp *spaces.Service) Option { return func(a *API) { a.spaces = sp } }

// getSpaceHierarchy serves GET /_matrix/client/v1/rooms/{roomId}/hierarchy
// (space_hierarchy.yaml).
func (a *API) getSpaceHierarchy(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	req := spaces.HierarchyReq{Root: roomID, User: session(r).UserID, MaxDepth: spaces.NoDepthLimit, From: q.Get("from")}
	if req.SuggestedOnly, err = queryBool(q.Get("suggested_only"), "suggested_only"); err != nil {
		return err
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return mxerr.InvalidParam.With("limit must be an integer greater than zero")
		}
		req.Limit = n
	}
	if v := q.Get("max_depth"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return mxerr.InvalidParam.With("max_depth must be a non-negative integer")
		}
		req.MaxDepth = n
	}
	page, err := a.spaces.Hierarchy(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.OK(w, page)
}

// queryBool reads a boolean query parameter: absent is false, and only
// true and false are accepted, as Synapse does.
func queryBool(v, name string) (bool, error) {
	switch v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, mxerr.InvalidParam.With("%s must be true or false", name)
}
