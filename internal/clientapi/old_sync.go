package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// maxStreamEvents caps the events of one GET /events answer.
const maxStreamEvents = 100

// defaultInitialSyncLimit is the messages per room of an initialSync
// without a limit (Synapse's default too).
const defaultInitialSyncLimit = 10

// getEvents serves GET /_matrix/client/v3/events: the deprecated event
// stream (old_sync.yaml getEvents) and, with room_id, peeking at one room
// (peeking_events.yaml peekEvents), which a user who never joined may do
// in a world_readable room. It long-polls on the notifier like /sync.
func (a *API) getEvents(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	q := r.URL.Query()
	req := clientsync.StreamRequest{User: sess.UserID, Limit: maxStreamEvents}
	if v := q.Get("from"); v != "" {
		pos, err := parseStreamToken(v)
		if err != nil {
			return err
		}
		req.From = &pos
	}
	if v := q.Get("timeout"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return mxerr.InvalidParam.With("timeout must be a non-negative integer")
		}
		req.Timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	if v := q.Get("room_id"); v != "" {
		roomID := id.RoomID(v)
		if _, err := a.roomAccess(r.Context(), sess.UserID, roomID); err != nil {
			return err
		}
		req.Room = roomID
	}
	evs, start, end, err := a.syncer.Stream(r.Context(), req)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{
		"start": clientsync.Token{Pos: start}.String(),
		"end":   clientsync.Token{Pos: end}.String(),
		"chunk": a.rooms.FormatAll(r.Context(), evs, viewer(r), true),
	})
}

// getOneEvent serves GET /_matrix/client/v3/events/{eventId} (old_sync.yaml):
// an event of a room the user may read, if its history visibility lets
// them see it.
func (a *API) getOneEvent(w http.ResponseWriter, r *http.Request) error {
	user := session(r).UserID
	ev, err := a.rooms.Event(r.Context(), id.EventID(r.PathValue("eventId")))
	if err != nil {
		return err
	}
	if ev.Rejected || ev.SoftFailed {
		return mxerr.NotFound.With("event not found")
	}
	if _, err := a.roomAccess(r.Context(), user, ev.RoomID()); err != nil {
		return mxerr.NotFound.With("event not found")
	}
	if ok, err := a.rooms.CanSee(r.Context(), user, []*room.Stored{ev}); err != nil {
		return err
	} else if !ok[0] {
		return mxerr.NotFound.With("event not found")
	}
	if ignored, err := a.accountData.Ignored(r.Context(), user); err != nil {
		return err
	} else if clientsync.Hides(ignored, ev) {
		return mxerr.NotFound.With("event not found")
	}
	return httpx.OK(w, a.rooms.Format(r.Context(), ev, viewer(r), true))
}

// initialSync serves GET /_matrix/client/v3/initialSync (old_sync.yaml):
// every room of the user with its state and latest messages.
func (a *API) initialSync(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	user := session(r).UserID
	q := r.URL.Query()
	limit, err := initialSyncLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	archived := false
	switch q.Get("archived") {
	case "", "false":
	case "true":
		archived = true
	default:
		return mxerr.InvalidParam.With("archived must be true or false")
	}
	now, err := a.syncer.CurrentPosition(ctx)
	if err != nil {
		return err
	}
	ms, err := a.rooms.LocalMemberships(ctx, user, 0)
	if err != nil {
		return err
	}
	global, byRoom, err := a.accountDataEvents(ctx, user, now)
	if err != nil {
		return err
	}
	ignored, err := a.accountData.Ignored(ctx, user)
	if err != nil {
		return err
	}
	rooms := []map[string]any{}
	for _, m := range ms {
		switch m.Membership {
		case "invite":
			// Invites from ignored users are not shown.
			if ev, err := a.rooms.Event(ctx, m.EventID); err == nil && ignored[ev.Sender] {
				continue
			}
		case "join":
		case "leave", "ban":
			if !archived {
				continue
			}
		default:
			continue
		}
		info, err := a.roomInfo(r, m, limit, now, ignored)
		if err != nil {
			return err
		}
		info["account_data"] = orEmpty(byRoom[m.RoomID])
		rooms = append(rooms, info)
	}
	presenceEvs := []any{}
	if a.presenceOn() {
		// The presence of the users sharing a room with the user who are
		// not offline, as /sync's initial presence section.
		evs, err := a.presence.Changes(ctx, user, 0, a.presence.Serial())
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if !ignored[ev.User] {
				presenceEvs = append(presenceEvs, map[string]any{"type": "m.presence", "sender": ev.User, "content": ev.Status})
			}
		}
	}
	return httpx.OK(w, map[string]any{
		"end":          clientsync.Token{Pos: now}.String(),
		"rooms":        rooms,
		"presence":     presenceEvs,
		"account_data": orEmpty(global),
	})
}

func initialSyncLimit(v string) (int, error) {
	if v == "" {
		return defaultInitialSyncLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, mxerr.InvalidParam.With("limit must be a non-negative integer")
	}
	return min(n, 1000), nil
}

// roomInfo builds the RoomInfo of old_sync.yaml for membership m (an
// empty membership peeks): for an invite the invite event; otherwise the
// state and the latest messages the user may see, up to their departure
// after leaving.
func (a *API) roomInfo(r *http.Request, m room.Membership, limit int, now int64, ignored map[id.UserID]bool) (map[string]any, error) {
	ctx := r.Context()
	user := session(r).UserID
	info := map[string]any{"room_id": m.RoomID}
	if m.Membership != "" {
		info["membership"] = m.Membership
	}
	if m.Membership == "invite" {
		if ev, err := a.rooms.Event(ctx, m.EventID); err == nil {
			info["invite"] = a.rooms.Format(ctx, ev, viewer(r), true)
		}
		return info, nil
	}
	upto := now
	var st room.State
	var err error
	if m.Membership == "leave" || m.Membership == "ban" {
		upto = m.StreamPos
		leave, err := a.rooms.Event(ctx, m.EventID)
		if err != nil {
			return nil, err
		}
		if st, err = a.rooms.StateAt(ctx, leave, true); err != nil {
			return nil, err
		}
	} else if st, err = a.rooms.CurrentState(ctx, m.RoomID); err != nil {
		return nil, err
	}
	stateEvs, err := a.rooms.StateEvents(ctx, st)
	if err != nil {
		return nil, err
	}
	page, err := a.rooms.Timeline(ctx, m.RoomID, room.Range{Before: upto + 1, Backwards: true, Limit: limit})
	if err != nil {
		return nil, err
	}
	if page, err = a.rooms.Visible(ctx, user, page); err != nil {
		return nil, err
	}
	page = clientsync.WithoutIgnored(ignored, page)
	chunk := make([]*room.Stored, len(page))
	for i, ev := range page {
		chunk[len(page)-1-i] = ev
	}
	messages := map[string]any{
		"end":   clientsync.Token{Pos: upto}.String(),
		"chunk": a.rooms.FormatAll(ctx, chunk, viewer(r), true),
	}
	if len(chunk) > 0 {
		messages["start"] = clientsync.Token{Pos: chunk[0].StreamPos - 1}.String()
	}
	info["messages"] = messages
	info["state"] = a.rooms.FormatAll(ctx, stateEvs, viewer(r), true)
	visibility := "private"
	if public, err := a.rooms.Visibility(ctx, m.RoomID); err == nil && public {
		visibility = "public"
	}
	info["visibility"] = visibility
	return info, nil
}

// accountDataEvents returns the user's account data as events: global,
// and per room.
func (a *API) accountDataEvents(ctx context.Context, user id.UserID, now int64) ([]json.RawMessage, map[id.RoomID][]json.RawMessage, error) {
	entries, err := a.accountData.Since(ctx, user, 0, now)
	if err != nil {
		return nil, nil, err
	}
	var global []json.RawMessage
	byRoom := map[id.RoomID][]json.RawMessage{}
	for _, e := range entries {
		raw, err := json.Marshal(map[string]any{"type": e.Type, "content": json.RawMessage(e.Content)})
		if err != nil {
			return nil, nil, err
		}
		if e.RoomID == "" {
			global = append(global, raw)
		} else {
			byRoom[e.RoomID] = append(byRoom[e.RoomID], raw)
		}
	}
	return global, byRoom, nil
}

func orEmpty(evs []json.RawMessage) []json.RawMessage {
	if evs == nil {
		return []json.RawMessage{}
	}
	return evs
}
