package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// getRoomSummary serves GET /_matrix/client/v1/room_summary/{roomIdOrAlias}
// (room_summary.yaml). An access token is optional: the spec lets servers
// answer unauthenticated callers for rooms that are public, knockable or
// world-readable, and the visibility rules show nothing else to them. A
// token that is sent must be valid.
func (a *API) getRoomSummary(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	user := session(r).UserID
	roomID, via, err := a.resolveRoom(ctx, r.PathValue("roomIdOrAlias"), viaServers(r))
	if err != nil {
		return err
	}
	sum, err := a.spaces.Summarize(ctx, roomID, user, via)
	if err != nil {
		return err
	}
	return httpx.OK(w, sum)
}
