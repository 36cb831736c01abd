// Package stateres is a placeholder until the real implementation lands.
package stateres

import (
	"context"
	"errors"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
)

// Fetcher loads events for resolution.
type Fetcher interface {
	Events(ctx context.Context, ids []id.EventID) ([]*pdu.Event, error)
}

// StateMap maps (type, state_key) to an event ID.
type StateMap = map[pdu.StateKey]id.EventID

// Resolve is not implemented yet.
func Resolve(ctx context.Context, v id.RoomVersion, sets []StateMap, f Fetcher) (StateMap, error) {
	return nil, errors.New("state resolution not implemented")
}
