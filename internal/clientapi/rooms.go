package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// getJoinedRooms is not implemented yet.
func (a *API) getJoinedRooms(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getJoinedMembersByRoom is not implemented yet.
func (a *API) getJoinedMembersByRoom(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getMembersByRoom is not implemented yet.
func (a *API) getMembersByRoom(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getRoomState is not implemented yet.
func (a *API) getRoomState(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getRoomStateWithKey is not implemented yet.
func (a *API) getRoomStateWithKey(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}

// getOneRoomEvent is not implemented yet.
func (a *API) getOneRoomEvent(w http.ResponseWriter, r *http.Request) error {
	return mxerr.Unrecognized.With("not implemented")
}
