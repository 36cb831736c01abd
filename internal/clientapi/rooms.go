package clientapi

import (
	"context"
	"net/http"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// access describes what of a room's history a user may read: everything
// while joined, and up to their departure after leaving.
type access struct {
	joined bool
	// until is the last stream position visible to a user who left
	// (0 when joined: no limit).
	until   int64
	leaveEv id.EventID
}

// roomAccess checks that user may read the room.
func (a *API) roomAccess(ctx context.Context, user id.UserID, roomID id.RoomID) (access, error) {
	if _, err := a.rooms.Version(ctx, roomID); err != nil {
		return access{}, mxerr.Forbidden.With("you are not in room %s", roomID)
	}
	// A forgotten room is as one never joined: only world_readable
	// history stays readable, as for anyone (Synapse does the same).
	m, forgotten, ok, err := a.rooms.LocalMembership(ctx, user, roomID)
	if err != nil {
		return access{}, err
	}
	if ok && !forgotten {
		switch m.Membership {
		case "join":
			return access{joined: true}, nil
		case "leave", "ban":
			return access{until: m.StreamPos, leaveEv: m.EventID}, nil
		}
	}
	if hv, _ := a.rooms.CurrentStateEvent(ctx, roomID, "m.room.history_visibility", ""); hv != nil &&
		strings.Contains(string(hv.Content), `"world_readable"`) {
		return access{joined: true}, nil
	}
	return access{}, mxerr.Forbidden.With("you are not in room %s", roomID)
}

func viewer(r *http.Request) room.Viewer {
	s := session(r)
	return room.Viewer{User: s.UserID, Device: s.DeviceID}
}

// stateFor returns the room state the user may see: current state while
// joined, the state at their departure after leaving.
func (a *API) stateFor(ctx context.Context, roomID id.RoomID, acc access) (room.State, error) {
	if acc.joined {
		return a.rooms.CurrentState(ctx, roomID)
	}
	ev, err := a.rooms.Event(ctx, acc.leaveEv)
	if err != nil {
		return nil, err
	}
	return a.rooms.StateAt(ctx, ev, true)
}

// getJoinedRooms serves GET /_matrix/client/v3/joined_rooms (list_joined_rooms.yaml).
func (a *API) getJoinedRooms(w http.ResponseWriter, r *http.Request) error {
	ms, err := a.rooms.LocalMemberships(r.Context(), session(r).UserID, 0)
	if err != nil {
		return err
	}
	out := []id.RoomID{}
	for _, m := range ms {
		if m.Membership == "join" {
			out = append(out, m.RoomID)
		}
	}
	return httpx.OK(w, map[string]any{"joined_rooms": out})
}

// getJoinedMembersByRoom serves GET /_matrix/client/v3/rooms/{roomId}/joined_members (rooms.yaml).
func (a *API) getJoinedMembersByRoom(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	acc, err := a.roomAccess(r.Context(), session(r).UserID, roomID)
	if err != nil {
		return err
	}
	if !acc.joined {
		return mxerr.Forbidden.With("you are not joined to room %s", roomID)
	}
	st, err := a.rooms.CurrentState(r.Context(), roomID)
	if err != nil {
		return err
	}
	members, err := a.memberEvents(r.Context(), st)
	if err != nil {
		return err
	}
	joined := map[string]any{}
	for _, ev := range members {
		if ev.Membership() != "join" {
			continue
		}
		// The member event says displayname; this response says
		// display_name (rooms.yaml RoomMember), which matrix-nio checks.
		var c struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		_ = httpx.Unmarshal(ev.Content, &c)
		joined[*ev.StateKey] = roomMember{DisplayName: c.DisplayName, AvatarURL: c.AvatarURL}
	}
	return httpx.OK(w, map[string]any{"joined": joined})
}

// roomMember is a member of the joined_members response.
type roomMember struct {
	DisplayName *string `json:"display_name,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

// getMembersByRoom serves GET /_matrix/client/v3/rooms/{roomId}/members
// (rooms.yaml), with the at, membership and not_membership filters.
func (a *API) getMembersByRoom(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	acc, err := a.roomAccess(r.Context(), session(r).UserID, roomID)
	if err != nil {
		return err
	}
	st, err := a.stateFor(r.Context(), roomID, acc)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if at := q.Get("at"); at != "" {
		pos, err := parseStreamToken(at)
		if err != nil {
			return err
		}
		if !acc.joined && pos > acc.until {
			pos = acc.until
		}
		// The state after the room's last event at the token, which the
		// user must be allowed to see (as Synapse asks).
		last, err := a.rooms.Timeline(r.Context(), roomID, room.Range{Before: pos + 1, Backwards: true, Limit: 1})
		if err != nil {
			return err
		}
		if len(last) == 0 {
			return mxerr.NotFound.With("no event in the room at %s", at)
		}
		if ok, err := a.rooms.CanSee(r.Context(), session(r).UserID, last); err != nil {
			return err
		} else if !ok[0] {
			return mxerr.NotFound.With("you may not see the room at %s", at)
		}
		if st, err = a.rooms.StateAt(r.Context(), last[0], true); err != nil {
			return err
		}
	}
	want, notWant := q.Get("membership"), q.Get("not_membership")
	members, err := a.memberEvents(r.Context(), st)
	if err != nil {
		return err
	}
	var evs []*room.Stored
	for _, ev := range members {
		m := ev.Membership()
		if (want != "" && m != want) || (notWant != "" && m == notWant) {
			continue
		}
		evs = append(evs, ev)
	}
	return httpx.OK(w, map[string]any{"chunk": a.rooms.FormatAll(r.Context(), evs, viewer(r), true)})
}

// memberEvents loads the m.room.member events of a state map in one batch.
func (a *API) memberEvents(ctx context.Context, st room.State) ([]*room.Stored, error) {
	members := room.State{}
	for k, ref := range st {
		if k.Type == "m.room.member" {
			members[k] = ref
		}
	}
	return a.rooms.StateEvents(ctx, members)
}

// getRoomState serves GET /_matrix/client/v3/rooms/{roomId}/state (rooms.yaml).
func (a *API) getRoomState(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	acc, err := a.roomAccess(r.Context(), session(r).UserID, roomID)
	if err != nil {
		return err
	}
	st, err := a.stateFor(r.Context(), roomID, acc)
	if err != nil {
		return err
	}
	evs, err := a.rooms.StateEvents(r.Context(), st)
	if err != nil {
		return err
	}
	return httpx.OK(w, a.rooms.FormatAll(r.Context(), evs, viewer(r), true))
}

// getRoomStateWithKey serves GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} (rooms.yaml).
func (a *API) getRoomStateWithKey(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	acc, err := a.roomAccess(r.Context(), session(r).UserID, roomID)
	if err != nil {
		return err
	}
	st, err := a.stateFor(r.Context(), roomID, acc)
	if err != nil {
		return err
	}
	ref, ok := st[room.StateKeyOf(r.PathValue("eventType"), r.PathValue("stateKey"))]
	if !ok {
		return mxerr.NotFound.With("state event not found")
	}
	ev, err := a.rooms.Event(r.Context(), ref.ID)
	if err != nil {
		return err
	}
	if r.URL.Query().Get("format") == "event" {
		return httpx.OK(w, a.rooms.Format(r.Context(), ev, viewer(r), true))
	}
	return httpx.JSON(w, http.StatusOK, rawJSON(ev.Content))
}

// getOneRoomEvent serves GET /_matrix/client/v3/rooms/{roomId}/event/{eventId} (rooms.yaml).
func (a *API) getOneRoomEvent(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	if _, err := a.roomAccess(r.Context(), session(r).UserID, roomID); err != nil {
		return mxerr.NotFound.With("event not found")
	}
	ev, err := a.rooms.Event(r.Context(), id.EventID(r.PathValue("eventId")))
	if err != nil {
		return err
	}
	if ev.RoomID() != roomID || ev.Rejected || ev.SoftFailed {
		return mxerr.NotFound.With("event not found")
	}
	if ok, err := a.rooms.CanSee(r.Context(), session(r).UserID, []*room.Stored{ev}); err != nil {
		return err
	} else if !ok[0] {
		return mxerr.NotFound.With("event not found")
	}
	return httpx.OK(w, a.rooms.Format(r.Context(), ev, viewer(r), true))
}

// rawJSON marshals as the raw bytes it holds.
type rawJSON []byte

// MarshalJSON returns the raw bytes.
func (j rawJSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("{}"), nil
	}
	return j, nil
}
