// Package spaces answers questions about rooms as seen from outside them:
// the space hierarchy (a walk of m.space.child state, client-server
// space_hierarchy.yaml and its federation counterpart) and room summaries
// (room_summary.yaml, MSC3266). It owns the summary of a room (name, topic,
// join rule, counts...), who may be shown it (join rules, history
// visibility, restricted-room membership), the walk's pagination sessions,
// and the calls to other servers' hierarchy endpoint for rooms this server
// is not in.
//
// It reads rooms through room.Service and never writes to them; it
// imports room and fedclient (for the wire types) and must not import
// clientapi, federationapi or homeserver, which call it.
package spaces

import (
	"context"
	"log/slog"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/room"
)

// Remote asks another server for a room's hierarchy (fedclient.Client).
type Remote interface {
	GetSpaceHierarchy(ctx context.Context, dest string, roomID id.RoomID, suggestedOnly bool) (fedclient.SpaceHierarchyResp, error)
}

// Service answers hierarchy and summary requests. It is safe for
// concurrent use.
type Service struct {
	rooms      *room.Service
	remote     Remote
	serverName string
	log        *slog.Logger
	sessions   *sessions
	now        func() time.Time
}

// New returns the service; remote may be nil, and then rooms this server
// is not in are left out of every answer.
func New(rooms *room.Service, remote Remote, log *slog.Logger) *Service {
	return &Service{
		rooms: rooms, remote: remote, serverName: rooms.ServerName(), log: log,
		sessions: newSessions(), now: time.Now,
	}
}

// Summary is a room's summary (definitions/room_summary.yaml): the public
// rooms chunk plus the room type, the rooms a restricted room allows, its
// encryption and version.
type Summary struct {
	room.PublicRoom
	AllowedRoomIDs []id.RoomID `json:"allowed_room_ids,omitempty"`
	Encryption     string      `json:"encryption,omitempty"`
	RoomVersion    string      `json:"room_version,omitempty"`
}

// ChildEvent is an m.space.child event in stripped form with its
// origin_server_ts (StrippedChildStateEvent).
type ChildEvent struct {
	Type           string    `json:"type"`
	StateKey       string    `json:"state_key"`
	Content        childBody `json:"content"`
	Sender         id.UserID `json:"sender"`
	OriginServerTS int64     `json:"origin_server_ts"`
}

// childBody is the content of an m.space.child event. Raw keeps every key
// the sender set, since clients are shown the content as it is.
type childBody struct {
	Via       []string
	Order     string
	Suggested bool
	Raw       map[string]any
}

// Entry is one room of a hierarchy: its summary and, for a space, its
// m.space.child events (SpaceHierarchyRoomsChunk).
type Entry struct {
	Summary
	ChildrenState []ChildEvent `json:"children_state"`
}
