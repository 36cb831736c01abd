package federationapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// makeKnock handles GET /_matrix/federation/v1/make_knock/{roomId}/{userId}
// (knocks.yaml).
func (a *API) makeKnock(w http.ResponseWriter, r *http.Request) error {
	return a.makeMembership(w, r, "knock", true)
}

// sendKnock handles PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}
// (knocks.yaml): the knock goes through the room path, and the knocking
// server gets the stripped state its user is shown.
func (a *API) sendKnock(w http.ResponseWriter, r *http.Request) error {
	stored, err := a.receiveMembership(r, "knock")
	if err != nil {
		return err
	}
	st, err := a.rooms.StrippedState(r.Context(), stored.RoomID())
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"knock_room_state": st})
}
