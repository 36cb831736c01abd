package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
)

// sendMessage serves PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
// (room_send.yaml). A repeated transaction ID from the same device, to the
// same room and event type, returns the first event instead of sending
// again.
func (a *API) sendMessage(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	evType := r.PathValue("eventType")
	if evType == "m.room.redaction" {
		return mxerr.BadJSON.With("use the /redact endpoint to redact events") // so redaction checks apply
	}
	var content map[string]json.RawMessage
	if err := httpx.DecodeJSON(r, &content); err != nil {
		return err
	}
	raw, _ := json.Marshal(content)
	ev, err := a.rooms.Send(r.Context(), pdu.Proto{Type: evType, Sender: sess.UserID, Content: raw, RoomID: roomID},
		&room.Txn{Device: sess.DeviceID, Scope: room.SendScope(roomID, evType), ID: r.PathValue("txnId")})
	if err != nil {
		return err
	}
	a.active(sess.UserID)
	return httpx.OK(w, map[string]any{"event_id": ev.ID})
}
