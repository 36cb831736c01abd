package clientsync

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"
)

// accountData fills the global account_data section.
func (s *Service) accountData(ctx context.Context, req Request, since, now int64, resp *Response) error {
	return nil
}

// roomAccountData returns a room's account data changed in (since, now].
func (s *Service) roomAccountData(ctx context.Context, req Request, roomID id.RoomID, since, now int64) []json.RawMessage {
	return []json.RawMessage{}
}
