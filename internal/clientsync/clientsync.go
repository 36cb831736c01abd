// Package clientsync assembles /sync responses: tokens and positions, the
// per-room sections (state, timeline, ephemeral, account data) and the
// long-poll that waits on the notifier.
//
// Each response section has its own file. clientsync reads through room and
// its own store; it never writes events. Named clientsync, not sync, so it
// does not shadow the standard library.
package clientsync

import (
	"log/slog"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Service builds sync responses.
type Service struct {
	db       *storage.DB
	rooms    *room.Service
	notifier *notifier.Notifier
	log      *slog.Logger
}

// New returns a sync Service.
func New(db *storage.DB, rooms *room.Service, n *notifier.Notifier, log *slog.Logger) *Service {
	return &Service{db: db, rooms: rooms, notifier: n, log: log}
}
