package clientapi

import (
	"encoding/json"
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
)

// setRoomStateWithKey serves PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} (room_state.yaml).
func (a *API) setRoomStateWithKey(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	evType, stateKey := r.PathValue("eventType"), r.PathValue("stateKey")
	var content map[string]json.RawMessage
	if err := httpx.DecodeJSON(r, &content); err != nil {
		return err
	}
	raw, _ := json.Marshal(content)
	if evType == "m.room.create" {
		return mxerr.Forbidden.With("m.room.create cannot be sent to an existing room")
	}
	if evType == "m.room.canonical_alias" {
		if err := a.checkCanonicalAlias(r, roomID, content); err != nil {
			return err
		}
	}
	// Sending the same content again is a no-op that returns the existing event.
	if cur, err := a.rooms.CurrentStateEvent(r.Context(), roomID, evType, stateKey); err == nil && cur != nil &&
		cur.Sender == sess.UserID && jsonEqual(cur.Content, raw) {
		return httpx.OK(w, map[string]any{"event_id": cur.ID})
	}
	if evType == "m.room.member" {
		evID, err := a.setMemberState(r.Context(), sess.UserID, roomID, stateKey, content)
		if err != nil {
			return err
		}
		return httpx.OK(w, map[string]any{"event_id": evID})
	}
	ev, err := a.rooms.Send(r.Context(), pdu.Proto{Type: evType, StateKey: &stateKey, Sender: sess.UserID, Content: raw, RoomID: roomID}, nil)
	if err != nil {
		return err
	}
	a.active(session(r).UserID)
	return httpx.OK(w, map[string]any{"event_id": ev.ID})
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
