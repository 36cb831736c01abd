package push

import (
	"context"
	"encoding/json"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// Notification is one event that a user's push rules say notifies them:
// what the rule evaluation hands to pusher delivery.
type Notification struct {
	UserID  id.UserID
	RoomID  id.RoomID
	EventID id.EventID
	// Event is the event in client format (type, sender, content,
	// state_key, origin_server_ts), for the push gateway's full format.
	Event json.RawMessage
	// Actions are the matching rule's actions; Tweaks are their set_tweak
	// entries as the gateway's devices[].tweaks (sound, highlight, …).
	Actions []json.RawMessage
	Tweaks  map[string]any
	// Highlight is true when the actions highlight.
	Highlight bool
	// Unread is the user's count of unread notifications over all rooms
	// once this one is counted: the gateway's counts.unread.
	Unread int
	// StreamPos is the event's stream position.
	StreamPos int64
}

// Sink takes each notification in the transaction that records it, so
// that delivery to the user's pushers is queued if and only if the
// notification is stored.
type Sink interface {
	// WithPushers returns which of users have anywhere to push to: the
	// notifications of the others are neither prepared nor handed over.
	WithPushers(ctx context.Context, tx *storage.Tx, users []id.UserID) (map[id.UserID]bool, error)
	Notified(ctx context.Context, tx *storage.Tx, n Notification) error
}
