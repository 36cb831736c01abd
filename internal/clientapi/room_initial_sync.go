package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/room"
)

// roomInitialSync serves GET /_matrix/client/v3/rooms/{roomId}/initialSync
// (room_initial_sync.yaml): one room's state and latest messages, for a
// member, a former member, or anyone peeking at a world_readable room.
func (a *API) roomInitialSync(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	user := session(r).UserID
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	if _, err := a.roomAccess(ctx, user, roomID); err != nil {
		return err
	}
	limit, err := initialSyncLimit(r.URL.Query().Get("limit"))
	if err != nil {
		return err
	}
	now, err := a.syncer.CurrentPosition(ctx)
	if err != nil {
		return err
	}
	m, forgotten, ok, err := a.rooms.LocalMembership(ctx, user, roomID)
	if err != nil {
		return err
	}
	if !ok || forgotten || (m.Membership != "join" && m.Membership != "leave" && m.Membership != "ban") {
		// Peeking: the room as it is now, no membership of one's own.
		m = room.Membership{RoomID: roomID}
	}
	ignored, err := a.accountData.Ignored(ctx, user)
	if err != nil {
		return err
	}
	info, err := a.roomInfo(r, m, limit, now, ignored)
	if err != nil {
		return err
	}
	_, byRoom, err := a.accountDataEvents(ctx, user, now)
	if err != nil {
		return err
	}
	info["account_data"] = orEmpty(byRoom[roomID])
	return httpx.OK(w, info)
}
