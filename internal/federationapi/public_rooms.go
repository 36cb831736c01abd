package federationapi

import (
	"net/http"
	"strconv"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// getPublicRooms handles GET /_matrix/federation/v1/publicRooms (public_rooms.yaml).
func (a *API) getPublicRooms(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return mxerr.InvalidParam.With("limit must be a non-negative integer")
		}
		limit = n
	}
	return a.publicRooms(w, r, limit, q.Get("since"), "")
}

// queryPublicRooms handles POST /_matrix/federation/v1/publicRooms (public_rooms.yaml).
func (a *API) queryPublicRooms(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Limit  int    `json:"limit"`
		Since  string `json:"since"`
		Filter struct {
			GenericSearchTerm string `json:"generic_search_term"`
		} `json:"filter"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Limit < 0 {
		return mxerr.InvalidParam.With("limit must be a non-negative integer")
	}
	return a.publicRooms(w, r, req.Limit, req.Since, req.Filter.GenericSearchTerm)
}

func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, limit int, since, search string) error {
	if !a.publicRoomsOpen {
		return mxerr.Forbidden.With("this server does not share its room directory over federation")
	}
	all, err := a.rooms.PublicRooms(r.Context(), search)
	if err != nil {
		return err
	}
	page, err := room.Paginate(all, limit, since)
	if err != nil {
		return err
	}
	return httpx.OK(w, page)
}
