// Package upgrade owns room upgrades (POST /rooms/{roomId}/upgrade,
// room_upgrades.yaml): the replacement room's initial events, built from
// the old room's state and handed to room.Service.Create, then the old
// room's tombstone and restricted power levels, the move of its aliases
// and directory listing, and the copy of each local member's tags, direct
// chat entry and room-specific push rules, as Synapse does. The same copy
// runs when a local user joins an upgraded room later (Joined), and, for a
// room upgraded on another server, the first local join moves this
// server's aliases and listing of the old room.
//
// Every event goes through room like any other; upgrade holds no state
// but the upgrades in progress. It
// imports room, accountdata, push, pdu and mxerr, and is imported only by
// clientapi (the handler) and homeserver (wiring).
package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/room"
)

// Service upgrades rooms.
type Service struct {
	rooms       *room.Service
	accountData *accountdata.Store
	push        *push.Service
	log         *slog.Logger
	flights     flights
}

// New returns an upgrade Service.
func New(rooms *room.Service, ad *accountdata.Store, p *push.Service, log *slog.Logger) *Service {
	return &Service{rooms: rooms, accountData: ad, push: p, log: log}
}

// Request is one upgrade.
type Request struct {
	User    id.UserID
	Room    id.RoomID
	Version id.RoomVersion
	// AdditionalCreators are the new room's creators besides User, for
	// versions with privileged creators (12); ignored for others.
	AdditionalCreators []id.UserID
	// JoinContent is User's m.room.member content in the new room
	// (membership join, with their profile).
	JoinContent json.RawMessage
}

// copied are the state events the new room starts with, as the spec
// recommends and Synapse copies (m.room.power_levels and
// m.room.canonical_alias are handled apart), in the order they are sent.
var copied = []string{
	"m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
	"m.room.name", "m.room.topic", "m.room.avatar", "m.room.encryption", "m.room.server_acl",
}

// Upgrade replaces the room by a new room of req.Version and returns the
// new room's ID. It follows the spec's server behaviour:
//
//  1. the user must be allowed to send m.room.tombstone in the old room;
//  2. the new room's create event names its predecessor and keeps the
//     room type (and m.federate: false);
//  3. the transferable state is copied, with bans and, in a space, its
//     children;
//  4. local aliases move to the new room;
//  5. the tombstone goes to the old room;
//  6. the old room's power levels stop normal members sending or inviting.
//
// Then, as Synapse does, the directory listing moves and local members'
// tags, m.direct entries and push rules about the room are copied.
//
// One upgrade of a room runs at a time, and a repeated request within
// five minutes gets the first one's room.
func (s *Service) Upgrade(ctx context.Context, req Request) (id.RoomID, error) {
	return s.flights.do(ctx, flightKey{req.Room, req.User, req.Version}, func() (id.RoomID, error) {
		// The upgrade outlives a client that gives up: it is a chain
		// of events that should not stop halfway.
		return s.upgrade(context.WithoutCancel(ctx), req)
	})
}

func (s *Service) upgrade(ctx context.Context, req Request) (id.RoomID, error) {
	if !pdu.IsSupported(req.Version) {
		return "", mxerr.UnsupportedRoomVer.With("room version %q is not supported", req.Version)
	}
	v12 := req.Version.PrivilegedRoomCreators()
	if v12 {
		// The upgrader is the creator already, and a user listed
		// twice is one creator.
		var creators []id.UserID
		for _, u := range req.AdditionalCreators {
			if _, _, err := u.ParseAndValidateRelaxed(); err != nil {
				return "", mxerr.BadJSON.With("additional_creators: %q is not a valid user ID", u)
			}
			if u != req.User && !slices.Contains(creators, u) {
				creators = append(creators, u)
			}
		}
		req.AdditionalCreators = creators
	} else {
		req.AdditionalCreators = nil
	}
	state, err := s.rooms.CurrentState(ctx, req.Room)
	if err != nil {
		return "", err
	}
	// 1. A dry run of the tombstone authorizes it against the current
	// state (membership included) without storing anything.
	if _, err := s.rooms.BuildEvent(ctx, tombstone(req.User, req.Room, "")); err != nil {
		return "", forbidden(err)
	}

	old, err := s.loadState(ctx, req.Room, state)
	if err != nil {
		return "", err
	}
	var newID id.RoomID
	var tomb *pdu.Event
	predecessor := map[string]any{"room_id": req.Room}
	if !req.Version.RoomIDIsCreateEventID() {
		// Before v12 the new room's ID is chosen here, so the tombstone
		// can name it and the create event can name the tombstone, as
		// Synapse does; a v12 room's ID is its create event's hash, and
		// the spec lets its predecessor omit event_id.
		newID = s.rooms.NewRoomID()
		if tomb, err = s.rooms.BuildEvent(ctx, tombstone(req.User, req.Room, newID)); err != nil {
			return "", forbidden(err)
		}
		predecessor["event_id"] = tomb.ID
	}
	protos, err := s.initialEvents(req, old, predecessor)
	if err != nil {
		return "", err
	}
	newID, _, err = s.rooms.CreateWithID(ctx, newID, req.Version, protos)
	if err != nil {
		return "", fmt.Errorf("creating the replacement of %s: %w", req.Room, err)
	}

	// 5. The tombstone.
	if tomb != nil {
		_, err = s.rooms.SendBuilt(ctx, tomb)
	} else {
		_, err = s.rooms.Send(ctx, tombstone(req.User, req.Room, newID), nil)
	}
	if err != nil {
		return "", fmt.Errorf("sending the tombstone of %s: %w", req.Room, err)
	}
	// 6. and the rest: the new room exists and the old one points at it,
	// so what follows is best effort, logged rather than failing the
	// request (Synapse does the same).
	s.restrictOld(ctx, req, old)
	s.moveAliases(ctx, req, old, newID)
	s.moveListing(ctx, req.Room, newID)
	s.copyMembers(ctx, req.Room, newID)
	return newID, nil
}

// tombstone is the proto of the old room's m.room.tombstone.
func tombstone(user id.UserID, roomID, replacement id.RoomID) pdu.Proto {
	content, _ := json.Marshal(map[string]any{"body": "This room has been replaced", "replacement_room": replacement})
	return stateProto(user, "m.room.tombstone", "", content, roomID)
}

func stateProto(user id.UserID, typ, key string, content json.RawMessage, roomID id.RoomID) pdu.Proto {
	return pdu.Proto{Type: typ, StateKey: &key, Sender: user, Content: content, RoomID: roomID}
}

// forbidden turns a refusal of the tombstone into the spec's 403.
func forbidden(err error) error {
	var mx *mxerr.Error
	if errors.As(err, &mx) && mx.Status == 403 {
		return mxerr.Forbidden.With("You cannot upgrade this room: %s", mx.Message).Wrap(err)
	}
	return err
}

// oldState is the part of the old room's state an upgrade reads.
type oldState struct {
	create map[string]json.RawMessage
	// byType holds the contents of the copied types, power levels and
	// canonical alias.
	byType map[string]json.RawMessage
	// children are the space's m.space.child contents by state key.
	children map[string]json.RawMessage
	bans     []id.UserID
}

// loadState reads the events an upgrade copies: a handful of state
// types, the space's children and the banned members.
func (s *Service) loadState(ctx context.Context, roomID id.RoomID, st room.State) (*oldState, error) {
	var ids []id.EventID
	want := append(slices.Clone(copied), "m.room.create", "m.room.power_levels", "m.room.canonical_alias")
	for k, ref := range st {
		if (k.StateKey == "" && slices.Contains(want, k.Type)) || k.Type == "m.space.child" {
			ids = append(ids, ref.ID)
		}
	}
	evs, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("loading the state of %s to copy: %w", roomID, err)
	}
	old := &oldState{byType: map[string]json.RawMessage{}, children: map[string]json.RawMessage{}}
	for _, ev := range evs {
		if ev == nil {
			continue
		}
		switch ev.Type {
		case "m.room.create":
			if err := json.Unmarshal(ev.Content, &old.create); err != nil {
				return nil, fmt.Errorf("parsing the create event of %s: %w", roomID, err)
			}
		case "m.space.child":
			old.children[*ev.StateKey] = json.RawMessage(ev.Content)
		default:
			old.byType[ev.Type] = json.RawMessage(ev.Content)
		}
	}
	if old.bans, err = s.rooms.MembersWith(ctx, roomID, "ban"); err != nil {
		return nil, err
	}
	return old, nil
}
