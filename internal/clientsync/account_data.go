package clientsync

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/notifier"
)

// accountDataChanges holds the user's account data changes of one build,
// by room ("" for global), oldest first.
type accountDataChanges map[id.RoomID][]accountdata.Entry

// loadAccountData reads the user's account data changed in (since, now],
// global and for every room, in one query.
func (s *Service) loadAccountData(ctx context.Context, req Request, since, now int64) (accountDataChanges, error) {
	if req.changed&notifier.AccountData == 0 {
		return accountDataChanges{}, nil
	}
	entries, err := s.accountDataStore.Since(ctx, req.User, since, now)
	if err != nil {
		return nil, err
	}
	out := accountDataChanges{}
	for _, e := range entries {
		out[e.RoomID] = append(out[e.RoomID], e)
	}
	return out, nil
}

// accountData fills the global account_data section from the changes build
// loaded into req.
func (s *Service) accountData(ctx context.Context, req Request, since, now int64, resp *Response) error {
	f := &req.Filter.AccountData
	for _, e := range req.accountData[""] {
		if f.Match(e.Type, req.User) {
			resp.AccountData.Events = append(resp.AccountData.Events, accountDataEvent(e))
		}
	}
	return nil
}

// hasRoomAccountData reports whether the room has account data changes the
// filter lets through, which alone put a joined room in an incremental sync.
func (s *Service) hasRoomAccountData(roomID id.RoomID, req Request) bool {
	f := &req.Filter.Room.AccountData
	if !f.MatchRoom(roomID) {
		return false
	}
	for _, e := range req.accountData[roomID] {
		if f.Match(e.Type, req.User) {
			return true
		}
	}
	return false
}

// roomAccountData returns a room's account data changed in (since, now],
// from the changes build loaded into req (which start after since already;
// now is lower for a left room: the position of the departure).
func (s *Service) roomAccountData(ctx context.Context, req Request, roomID id.RoomID, since, now int64) []json.RawMessage {
	out := []json.RawMessage{}
	f := &req.Filter.Room.AccountData
	if !f.MatchRoom(roomID) {
		return out
	}
	for _, e := range req.accountData[roomID] {
		if e.StreamPos > since && e.StreamPos <= now && f.Match(e.Type, req.User) {
			out = append(out, accountDataEvent(e))
		}
	}
	return out
}

// accountDataEvent renders an entry as the {type, content} event of the
// account_data sections.
func accountDataEvent(e accountdata.Entry) json.RawMessage {
	raw, _ := json.Marshal(struct {
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	}{e.Type, e.Content})
	return raw
}
