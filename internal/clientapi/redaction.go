package clientapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
)

// redactEvent serves PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId} (redaction.yaml).
func (a *API) redactEvent(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var body struct {
		Reason string `json:"reason,omitempty"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	raw, _ := json.Marshal(body)
	target := id.EventID(r.PathValue("eventId"))
	// The transaction ID is the client's own: unsigned.transaction_id
	// echoes it, and clients match their local redaction by it.
	ev, err := a.rooms.Send(r.Context(), pdu.Proto{
		Type: "m.room.redaction", Sender: sess.UserID, Content: raw, RoomID: roomID, Redacts: target,
	}, &room.Txn{Device: sess.DeviceID, Scope: room.RedactScope(roomID, target), ID: r.PathValue("txnId")})
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"event_id": ev.ID})
}
