package clientsync

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// typingSerial returns the current typing serial for next_batch.
func (s *Service) typingSerial() int64 { return 0 }

// hasRoomEphemeral reports whether the room has ephemeral events (typing,
// receipts) newer than the request's token.
func (s *Service) hasRoomEphemeral(roomID id.RoomID, req Request, since int64) bool { return false }

// roomEphemeral returns the room's ephemeral events for the response.
func (s *Service) roomEphemeral(ctx context.Context, req Request, roomID id.RoomID, since, now int64) []json.RawMessage {
	return []json.RawMessage{}
}
