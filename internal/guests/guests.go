// Package guests enforces the part of the guest access module that is not
// a per-request check: when a room's m.room.guest_access stops being
// can_join (a local change, one received over federation, or a state
// resolution), the local guests joined to it leave, as the spec's server
// behaviour asks and as Synapse does (the guest leaves itself).
//
// It hears of state changes through room.StateHook, inside the writing
// transaction, and sends the leaves after that transaction commits, on
// its own goroutine, since the room's lock is held until then. A crash in
// between leaves the guests joined until the next change of guest access.
// guests imports room, users and pdu, and must not import clientapi or
// homeserver, which wires it.
package guests

import (
	"context"
	"encoding/json"
	"log/slog"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/users"
)

// Evictor makes local guests leave rooms that no longer admit guests.
type Evictor struct {
	rooms *room.Service
	users *users.Service
	log   *slog.Logger
}

// New returns the evictor.
func New(rooms *room.Service, u *users.Service, log *slog.Logger) *Evictor {
	return &Evictor{rooms: rooms, users: u, log: log}
}

// StateChanged is a room.StateHook: a change of m.room.guest_access to
// anything but can_join schedules the room's guests' leaves for after the
// commit. A nil Evictor does nothing.
func (e *Evictor) StateChanged(ctx context.Context, tx *storage.Tx, roomID id.RoomID, changes []room.StateChange,
	_ func(evType, stateKey string) (*pdu.Event, error)) error {
	if e == nil {
		return nil
	}
	for _, c := range changes {
		if c.Key.Type != "m.room.guest_access" || c.Key.StateKey != "" {
			continue
		}
		if c.Event != nil && canJoin(c.Event.Content) {
			continue
		}
		ctx := context.WithoutCancel(ctx)
		tx.AfterCommit(func() { go e.evict(ctx, roomID) })
	}
	return nil
}

func canJoin(content []byte) bool {
	var c struct {
		GuestAccess string `json:"guest_access"`
	}
	return json.Unmarshal(content, &c) == nil && c.GuestAccess == "can_join"
}

// evict sends a leave for each local guest joined to the room. The room
// may admit guests again by the time this runs (a quick toggle): the
// current state decides.
func (e *Evictor) evict(ctx context.Context, roomID id.RoomID) {
	if ev, err := e.rooms.CurrentStateEvent(ctx, roomID, "m.room.guest_access", ""); err == nil && ev != nil && canJoin(ev.Content) {
		return
	}
	joined, err := e.rooms.LocalJoined(ctx, roomID)
	if err != nil {
		e.log.Warn("listing members to remove guests failed", "room_id", roomID, "err", err)
		return
	}
	guests, err := e.users.Guests(ctx, joined)
	if err != nil {
		e.log.Warn("finding guests to remove failed", "room_id", roomID, "err", err)
		return
	}
	for _, g := range guests {
		sk := g.String()
		_, err := e.rooms.Send(ctx, pdu.Proto{Type: "m.room.member", StateKey: &sk, Sender: g, RoomID: roomID,
			Content: json.RawMessage(`{"membership":"leave"}`)}, nil)
		if err != nil {
			e.log.Warn("removing a guest from a room that no longer admits guests failed", "room_id", roomID, "user_id", g, "err", err)
			continue
		}
		e.log.Info("guest removed: the room no longer admits guests", "room_id", roomID, "user_id", g)
	}
}
