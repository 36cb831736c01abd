package clientapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/receipts"
)

// setReadMarker serves POST /_matrix/client/v3/rooms/{roomId}/read_markers
// (read_markers.yaml): it moves the fully read marker (m.fully_read room
// account data) and, when given, the public and private read receipts, as
// the matching /receipt calls would.
func (a *API) setReadMarker(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var body struct {
		FullyRead   id.EventID `json:"m.fully_read"`
		Read        id.EventID `json:"m.read"`
		ReadPrivate id.EventID `json:"m.read.private"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	user := session(r).UserID
	if err := a.requireJoined(r.Context(), roomID, user); err != nil {
		return err
	}
	marks := []struct {
		typ string
		ev  id.EventID
	}{{fullyRead, body.FullyRead}, {receipts.Read, body.Read}, {receipts.ReadPrivate, body.ReadPrivate}}
	// Check every event before applying any, so a bad one changes nothing.
	for _, m := range marks {
		if m.ev != "" {
			if err := a.checkReceiptEvent(r.Context(), roomID, m.ev); err != nil {
				return err
			}
		}
	}
	for _, m := range marks {
		if m.ev != "" {
			if err := a.markRead(r.Context(), roomID, user, m.typ, "", m.ev); err != nil {
				return err
			}
		}
	}
	a.active(session(r).UserID)
	return httpx.OK(w, httpx.Empty)
}
