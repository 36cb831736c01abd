package handshake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
)

// maxTimestampServers is how many servers one lookup asks at most.
const maxTimestampServers = 5

// timestampResp is the answer of federation timestamp_to_event.
type timestampResp struct {
	EventID        id.EventID `json:"event_id"`
	OriginServerTS *int64     `json:"origin_server_ts"`
}

// EventAtTimestamp asks the room's other servers for the event closest to
// ts in the direction (federation GET /timestamp_to_event, spec:
// server-server API, "Timestamp to event"), for when the history held here
// has a gap next to local, the closest event found locally (nil when none
// was). The room's creator's server goes first, as the one most likely to
// hold old history. An answer counts only when it is closer to ts than
// local and on the asked side of ts; the event is then fetched (/event),
// checked and stored as backfilled history if it is not held yet, so a
// client can go on to /context or /messages from it. At most
// maxTimestampServers are asked. It returns nil when no server had a
// better event.
func (s *Service) EventAtTimestamp(ctx context.Context, roomID id.RoomID, ts int64, forward bool, local *room.Stored) (*room.Stored, error) {
	servers, err := s.rooms.Servers(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if create, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.create", ""); err == nil && create != nil {
		first := create.Sender.Homeserver()
		for i, sv := range servers {
			if sv == first {
				copy(servers[1:i+1], servers[:i])
				servers[0] = first
			}
		}
	}
	dir := "b"
	if forward {
		dir = "f"
	}
	q := url.Values{"ts": {strconv.FormatInt(ts, 10)}, "dir": {dir}}
	asked := 0
	for _, server := range servers {
		if server == s.serverName {
			continue
		}
		// A client waits on this: a room with hundreds of servers must
		// not make it wait on each of them.
		if asked == maxTimestampServers {
			break
		}
		asked++
		ev, err := s.eventAtTimestampVia(ctx, server, roomID, q, ts, forward, local)
		if err != nil {
			s.log.Info("timestamp_to_event on another server failed", "room_id", roomID, "server", server, "err", err)
			continue
		}
		if ev != nil {
			return ev, nil
		}
	}
	return nil, nil
}

// eventAtTimestampVia asks one server; see EventAtTimestamp.
func (s *Service) eventAtTimestampVia(ctx context.Context, server string, roomID id.RoomID, q url.Values, ts int64, forward bool, local *room.Stored) (*room.Stored, error) {
	var resp timestampResp
	if err := s.client.Do(ctx, server, http.MethodGet, "/_matrix/federation/v1/timestamp_to_event/"+url.PathEscape(roomID.String()), q, nil, &resp); err != nil {
		return nil, err
	}
	if resp.EventID == "" || resp.OriginServerTS == nil {
		return nil, fmt.Errorf("answer without event_id or origin_server_ts")
	}
	if !closer(*resp.OriginServerTS, ts, forward, local) {
		return nil, nil
	}
	ev, err := s.rooms.Event(ctx, resp.EventID)
	if err != nil || ev.Outlier {
		if ev, err = s.fetchHistoric(ctx, server, roomID, resp.EventID); err != nil {
			return nil, err
		}
	}
	// Judge the event itself, not what the server said of it.
	if ev.RoomID() != roomID || ev.Rejected || ev.SoftFailed || ev.Outlier || !closer(ev.OriginServerTS, ts, forward, local) {
		return nil, nil
	}
	return ev, nil
}

// closer reports whether an event at evTS is on the asked side of ts and
// nearer to it than local.
func closer(evTS, ts int64, forward bool, local *room.Stored) bool {
	if (forward && evTS < ts) || (!forward && evTS > ts) {
		return false
	}
	if local == nil {
		return true
	}
	return absDiff(evTS, ts) < absDiff(local.OriginServerTS, ts)
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// fetchHistoric fetches one event of the room from server and stores it as
// backfilled history.
func (s *Service) fetchHistoric(ctx context.Context, server string, roomID id.RoomID, evID id.EventID) (*room.Stored, error) {
	v, err := s.rooms.Version(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var resp struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	if err := s.client.Do(ctx, server, http.MethodGet, "/_matrix/federation/v1/event/"+url.PathEscape(evID.String()), nil, nil, &resp); err != nil {
		return nil, fmt.Errorf("fetching %s: %w", evID, err)
	}
	if len(resp.PDUs) != 1 {
		return nil, fmt.Errorf("fetching %s: %d PDUs in the answer", evID, len(resp.PDUs))
	}
	ev, err := s.checker.Check(ctx, v, resp.PDUs[0])
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", evID, err)
	}
	if ev.ID != evID || ev.RoomID() != roomID {
		return nil, fmt.Errorf("asked for %s of %s, got %s of %s", evID, roomID, ev.ID, ev.RoomID())
	}
	if _, err := s.rooms.StoreBackfilled(ctx, server, roomID, []*pdu.Event{ev}); err != nil {
		return nil, err
	}
	return s.rooms.Event(ctx, evID)
}
