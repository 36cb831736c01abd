package homeserver

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// roomState gives pushers the current room state it names in gateway
// requests (room name, canonical alias, the sender's display name).
type roomState struct{ s *Server }

// StateContent returns the content of a current state event, or nil.
func (r roomState) StateContent(ctx context.Context, roomID id.RoomID, evType, stateKey string) (json.RawMessage, error) {
	ev, err := r.s.Rooms.CurrentStateEvent(ctx, roomID, evType, stateKey)
	if err != nil || ev == nil {
		return nil, err
	}
	return ev.Content, nil
}
