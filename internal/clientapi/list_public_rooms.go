package clientapi

import (
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// getRoomVisibilityOnDirectory serves GET /_matrix/client/v3/directory/list/room/{roomId}
// (list_public_rooms.yaml).
func (a *API) getRoomVisibilityOnDirectory(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	if _, err := a.rooms.Version(r.Context(), roomID); err != nil {
		return err
	}
	public, err := a.rooms.Visibility(r.Context(), roomID)
	if err != nil {
		return err
	}
	vis := "private"
	if public {
		vis = "public"
	}
	return httpx.OK(w, map[string]string{"visibility": vis})
}

// setRoomVisibilityOnDirectory serves PUT /_matrix/client/v3/directory/list/room/{roomId}
// (list_public_rooms.yaml). Publishing needs the power to set the room's
// canonical alias.
func (a *API) setRoomVisibilityOnDirectory(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var body struct {
		Visibility string `json:"visibility"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body.Visibility != "public" && body.Visibility != "private" {
		return mxerr.InvalidParam.With("visibility must be public or private")
	}
	user := session(r).UserID
	if err := a.requireJoined(ctx, roomID, user); err != nil {
		return err
	}
	pl, err := a.rooms.PowerLevels(ctx, roomID)
	if err != nil {
		return err
	}
	if pl.GetUserLevel(user) < pl.GetEventLevel(event.StateCanonicalAlias) {
		return mxerr.Forbidden.With("you may not change the room's directory visibility")
	}
	if err := a.rooms.SetVisibility(ctx, roomID, body.Visibility == "public"); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// publicRoomsReq is the body of POST /publicRooms.
type publicRoomsReq struct {
	Limit  int    `json:"limit"`
	Since  string `json:"since"`
	Filter struct {
		GenericSearchTerm string `json:"generic_search_term"`
	} `json:"filter"`
}

// getPublicRooms serves GET /_matrix/client/v3/publicRooms (list_public_rooms.yaml).
func (a *API) getPublicRooms(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var req publicRoomsReq
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return mxerr.InvalidParam.With("limit must be a non-negative integer")
		}
		req.Limit = n
	}
	req.Since = q.Get("since")
	return a.publicRooms(w, r, req)
}

// queryPublicRooms serves POST /_matrix/client/v3/publicRooms (list_public_rooms.yaml).
func (a *API) queryPublicRooms(w http.ResponseWriter, r *http.Request) error {
	var req publicRoomsReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Limit < 0 {
		return mxerr.InvalidParam.With("limit must be a non-negative integer")
	}
	return a.publicRooms(w, r, req)
}

// publicRooms answers from our directory, or from another server's when
// ?server names one.
func (a *API) publicRooms(w http.ResponseWriter, r *http.Request, req publicRoomsReq) error {
	if server := r.URL.Query().Get("server"); server != "" && server != a.cfg.ServerName {
		if !id.ValidateServerName(server) {
			return mxerr.InvalidParam.With("%q is not a server name", server)
		}
		if a.handshake == nil {
			return mxerr.Forbidden.With("federation is not enabled")
		}
		page, err := a.handshake.PublicRooms(r.Context(), server, req.Limit, req.Since, req.Filter.GenericSearchTerm)
		if err != nil {
			return err
		}
		return httpx.OK(w, page)
	}
	all, err := a.rooms.PublicRooms(r.Context(), req.Filter.GenericSearchTerm)
	if err != nil {
		return err
	}
	page, err := room.Paginate(all, req.Limit, req.Since)
	if err != nil {
		return err
	}
	return httpx.OK(w, page)
}
