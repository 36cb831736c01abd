package room

import (
	"context"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Create makes a new room of the given version from an ordered list of
// initial events, the first of which must be m.room.create. Every event is
// built, authorized and persisted in one transaction: the room appears whole
// or not at all.
func (s *Service) Create(ctx context.Context, version id.RoomVersion, protos []pdu.Proto) (id.RoomID, []*Stored, error) {
	var roomID id.RoomID
	if !version.RoomIDIsCreateEventID() {
		roomID = s.NewRoomID()
	}
	return s.CreateWithID(ctx, roomID, version, protos)
}

// NewRoomID returns a fresh room ID of this server, for a room of a
// version before 12 (where the create event's hash is the room ID) that
// must be named before it exists: a room upgrade's tombstone points at the
// new room, and the new room's create event at the tombstone.
func (s *Service) NewRoomID() id.RoomID { return newRoomID(s.serverName) }

// CreateWithID is Create with the room ID chosen by the caller (from
// NewRoomID); roomID must be "" for versions whose room ID is the create
// event's hash.
func (s *Service) CreateWithID(ctx context.Context, roomID id.RoomID, version id.RoomVersion, protos []pdu.Proto) (id.RoomID, []*Stored, error) {
	if !pdu.IsSupported(version) {
		return "", nil, mxerr.UnsupportedRoomVer.With("room version %q is not supported", version)
	}
	if len(protos) == 0 || protos[0].Type != "m.room.create" {
		return "", nil, fmt.Errorf("creating room: first event must be m.room.create")
	}
	if version.RoomIDIsCreateEventID() != (roomID == "") {
		return "", nil, fmt.Errorf("creating room: room ID %q does not fit version %s", roomID, version)
	}
	work := &info{loaded: true, exists: true, version: version, state: State{}, localJoined: map[id.UserID]struct{}{}, roomID: roomID}
	var stored []*Stored
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		for i, p := range protos {
			ev, err := s.buildLocal(ctx, work, p)
			if err != nil {
				return fmt.Errorf("initial event %d (%s): %w", i, p.Type, err)
			}
			if i == 0 {
				work.roomID = ev.RoomID()
				if _, err := tx.ExecContext(ctx, `INSERT INTO rooms (room_id, room_version, current_snapshot, created_ts) VALUES ($1, $2, 0, $3)`,
					work.roomID.String(), string(version), s.now().UnixMilli()); err != nil {
					return fmt.Errorf("storing room: %w", err)
				}
			}
			st, err := s.persist(ctx, tx, work, ev, nil)
			if err != nil {
				return err
			}
			stored = append(stored, st)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	in := s.info(work.roomID)
	in.mu.Lock()
	s.commit(ctx, in, work, stored)
	in.loaded = true
	in.mu.Unlock()
	return work.roomID, stored, nil
}

// createTimestamp returns the origin_server_ts for a new m.room.create:
// now, or one past the previous one if that was not earlier. From room
// version 12 the room ID is the create event's hash, so two rooms created
// by one user with the same settings in the same millisecond (a bridge or
// a script creating rooms in parallel) would otherwise get the same ID.
func (s *Service) createTimestamp(now int64) int64 {
	for {
		last := s.lastCreateTS.Load()
		ts := max(now, last+1)
		if s.lastCreateTS.CompareAndSwap(last, ts) {
			return ts
		}
	}
}

// powerLevels returns the room's power levels, with the spec's defaults when
// there is no power levels event, and creators at infinite power in v12.
func (s *Service) powerLevels(ctx context.Context, work *info) (*event.PowerLevelsEventContent, error) {
	pl := &event.PowerLevelsEventContent{}
	if ref, ok := work.state[pdu.StateKey{Type: "m.room.power_levels"}]; ok {
		ev, err := s.Event(ctx, ref.ID)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(ev.Content, pl); err != nil {
			return nil, fmt.Errorf("parsing power levels: %w", err)
		}
	} else if ref, ok := work.state[pdu.StateKey{Type: "m.room.create"}]; ok {
		// No power levels yet: the creator has 100.
		ev, err := s.Event(ctx, ref.ID)
		if err != nil {
			return nil, err
		}
		pl.Users = map[id.UserID]int{ev.Sender: 100}
	}
	if work.version.PrivilegedRoomCreators() {
		if ref, ok := work.state[pdu.StateKey{Type: "m.room.create"}]; ok {
			ev, err := s.Event(ctx, ref.ID)
			if err != nil {
				return nil, err
			}
			pl.CreateEvent, _ = ev.ToClientEvent(work.version)
		}
	}
	return pl, nil
}

// PowerLevels returns the room's effective power levels.
func (s *Service) PowerLevels(ctx context.Context, roomID id.RoomID) (*event.PowerLevelsEventContent, error) {
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return nil, mxerr.NotFound.With("unknown room")
	}
	return s.powerLevels(ctx, in)
}
