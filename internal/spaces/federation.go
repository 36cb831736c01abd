package spaces

import (
	"context"
	"encoding/json"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// FederationHierarchy is the answer of GET /_matrix/federation/v1/hierarchy/{roomId}.
type FederationHierarchy struct {
	Room                 Entry       `json:"room"`
	Children             []Entry     `json:"children"`
	InaccessibleChildren []id.RoomID `json:"inaccessible_children"`
}

// ServeFederation answers another server's hierarchy request for a room
// this server is in: the room and those of its children this server is in
// too, each judged for origin (open rooms, rooms origin is in, restricted
// rooms allowing a room origin is in; origin then filters for its user).
// Children origin may not see are listed as inaccessible; children this
// server knows nothing current of are left out. 404 when origin may not see
// the room itself.
func (s *Service) ServeFederation(ctx context.Context, roomID id.RoomID, origin string, suggestedOnly bool) (FederationHierarchy, error) {
	notFound := mxerr.NotFound.With("room not found or not accessible")
	in, err := s.inRoom(ctx, roomID)
	if err != nil {
		return FederationHierarchy{}, err
	}
	if !in {
		return FederationHierarchy{}, notFound
	}
	l, err := s.loadLocal(ctx, roomID)
	if err != nil {
		return FederationHierarchy{}, err
	}
	if ok, err := s.serverMaySee(ctx, l, origin); err != nil {
		return FederationHierarchy{}, err
	} else if !ok {
		return FederationHierarchy{}, notFound
	}
	room, children := l.entry(suggestedOnly)
	out := FederationHierarchy{Room: room, Children: []Entry{}, InaccessibleChildren: []id.RoomID{}}
	for _, c := range children {
		cid := id.RoomID(c.StateKey)
		in, err := s.inRoom(ctx, cid)
		if err != nil {
			return FederationHierarchy{}, err
		}
		if !in {
			continue
		}
		cl, err := s.loadLocal(ctx, cid)
		if err != nil {
			return FederationHierarchy{}, err
		}
		ok, err := s.serverMaySee(ctx, cl, origin)
		if err != nil {
			return FederationHierarchy{}, err
		}
		if !ok {
			out.InaccessibleChildren = append(out.InaccessibleChildren, cid)
			continue
		}
		e, _ := cl.entry(suggestedOnly)
		out.Children = append(out.Children, e)
	}
	return out, nil
}

// remoteHierarchy is what another server said of a room: its entry, the
// summaries of its children, and the children hidden from us.
type remoteHierarchy struct {
	room         Entry
	children     map[id.RoomID]Entry
	inaccessible []id.RoomID
}

// fetchRemote asks via servers in turn (at most maxViaPerRoom of them, not
// ourselves) for the room's hierarchy and returns the first answer that
// describes the room asked for; nil when none does.
func (s *Service) fetchRemote(ctx context.Context, roomID id.RoomID, via []string, suggestedOnly bool) *remoteHierarchy {
	if s.remote == nil {
		return nil
	}
	tried := 0
	for _, server := range via {
		if tried >= maxViaPerRoom {
			break
		}
		if server == s.serverName || !id.ValidateServerName(server) {
			continue
		}
		tried++
		cctx, cancel := context.WithTimeout(ctx, remoteCallTimeout)
		resp, err := s.remote.GetSpaceHierarchy(cctx, server, roomID, suggestedOnly)
		cancel()
		if err != nil {
			s.log.Debug("remote space hierarchy failed", "room_id", roomID, "server", server, "err", err)
			continue
		}
		var room Entry
		if err := json.Unmarshal(resp.Room, &room); err != nil || room.RoomID != roomID {
			s.log.Debug("remote space hierarchy answered for another room or in bad form", "room_id", roomID, "server", server, "err", err)
			continue
		}
		out := &remoteHierarchy{room: room, children: map[id.RoomID]Entry{}}
		for _, raw := range resp.Children {
			var c Entry
			if json.Unmarshal(raw, &c) != nil || !strings.HasPrefix(c.RoomID.String(), "!") {
				continue
			}
			out.children[c.RoomID] = c
		}
		for _, rid := range resp.InaccessibleChildren {
			if strings.HasPrefix(rid.String(), "!") {
				out.inaccessible = append(out.inaccessible, rid)
			}
		}
		return out
	}
	return nil
}
