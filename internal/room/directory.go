package room

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
)

// PublicRoom is one entry of the public room directory
// (definitions/public_rooms_chunk.yaml).
type PublicRoom struct {
	RoomID           id.RoomID    `json:"room_id"`
	Name             string       `json:"name,omitempty"`
	Topic            string       `json:"topic,omitempty"`
	CanonicalAlias   id.RoomAlias `json:"canonical_alias,omitempty"`
	AvatarURL        string       `json:"avatar_url,omitempty"`
	NumJoinedMembers int          `json:"num_joined_members"`
	WorldReadable    bool         `json:"world_readable"`
	GuestCanJoin     bool         `json:"guest_can_join"`
	JoinRule         string       `json:"join_rule,omitempty"`
	RoomType         string       `json:"room_type,omitempty"`
}

// PublicRooms lists the rooms published in the directory, most joined
// members first, optionally only those whose name, topic or alias
// contains search (case-insensitively).
func (s *Service) PublicRooms(ctx context.Context, search string) ([]PublicRoom, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT r.room_id,
		(SELECT COUNT(*) FROM current_state c WHERE c.room_id = r.room_id AND c.type = 'm.room.member' AND c.membership = 'join') AS n
		FROM rooms r WHERE r.is_public = 1 ORDER BY n DESC, r.room_id`)
	if err != nil {
		return nil, fmt.Errorf("listing public rooms: %w", err)
	}
	type entry struct {
		roomID id.RoomID
		n      int
	}
	var entries []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.roomID, &e.n); err != nil {
			rows.Close()
			return nil, err
		}
		entries = append(entries, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	search = strings.ToLower(search)
	out := []PublicRoom{}
	for _, e := range entries {
		pr, err := s.publicRoom(ctx, e.roomID, e.n)
		if err != nil {
			return nil, err
		}
		if search != "" && !strings.Contains(strings.ToLower(pr.Name+"\x00"+pr.Topic+"\x00"+string(pr.CanonicalAlias)), search) {
			continue
		}
		out = append(out, pr)
	}
	return out, nil
}

func (s *Service) publicRoom(ctx context.Context, roomID id.RoomID, joined int) (PublicRoom, error) {
	pr := PublicRoom{RoomID: roomID, NumJoinedMembers: joined}
	st, err := s.CurrentState(ctx, roomID)
	if err != nil {
		return pr, err
	}
	field := func(evType, path string) string {
		ref, ok := st[pdu.StateKey{Type: evType}]
		if !ok {
			return ""
		}
		ev, err := s.Event(ctx, ref.ID)
		if err != nil {
			return ""
		}
		var c map[string]any
		if json.Unmarshal(ev.Content, &c) != nil {
			return ""
		}
		v, _ := c[path].(string)
		return v
	}
	pr.Name = field("m.room.name", "name")
	pr.Topic = field("m.room.topic", "topic")
	pr.CanonicalAlias = id.RoomAlias(field("m.room.canonical_alias", "alias"))
	pr.AvatarURL = field("m.room.avatar", "url")
	pr.JoinRule = field("m.room.join_rules", "join_rule")
	pr.RoomType = field("m.room.create", "type")
	pr.WorldReadable = field("m.room.history_visibility", "history_visibility") == "world_readable"
	pr.GuestCanJoin = field("m.room.guest_access", "guest_access") == "can_join"
	return pr, nil
}

// Visibility reports whether the room is published in the directory.
func (s *Service) Visibility(ctx context.Context, roomID id.RoomID) (bool, error) {
	var public int64
	if err := s.db.QueryRowContext(ctx, `SELECT is_public FROM rooms WHERE room_id = $1`, roomID.String()).Scan(&public); err != nil {
		return false, fmt.Errorf("reading visibility of %s: %w", roomID, err)
	}
	return public != 0, nil
}
