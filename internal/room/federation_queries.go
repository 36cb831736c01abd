package room

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/storage"
)

// ServerInRoom reports whether server has a joined member in the room's
// current state: what the federation endpoints ask before sharing history.
func (s *Service) ServerInRoom(ctx context.Context, roomID id.RoomID, server string) (bool, error) {
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return false, err
	}
	defer in.mu.Unlock()
	return in.exists && in.servers[server] > 0, nil
}

// Servers returns the servers with joined members in the room.
func (s *Service) Servers(ctx context.Context, roomID id.RoomID) ([]string, error) {
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	out := make([]string, 0, len(in.servers))
	for sv := range in.servers {
		out = append(out, sv)
	}
	sort.Strings(out)
	return out, nil
}

// MembershipTemplate builds the unsigned event a remote server completes
// to change a user's membership (make_join, make_leave, make_knock). It
// fails with M_FORBIDDEN when the auth rules would not allow the event.
//
// A join of a restricted room by a user not yet joined or invited names a
// local member who may invite as join_authorised_via_users_server (the
// resident server vouches for the user's membership of an allowed room).
func (s *Service) MembershipTemplate(ctx context.Context, roomID id.RoomID, user id.UserID, membership string) (id.RoomVersion, json.RawMessage, error) {
	restricted := false
	if membership == "join" {
		var err error
		if restricted, err = s.checkRestrictedJoin(ctx, roomID, user); err != nil {
			return "", nil, err
		}
	}
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return "", nil, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return "", nil, mxerr.NotFound.With("unknown room")
	}
	sk := user.String()
	c := map[string]string{"membership": membership}
	if restricted {
		via, err := s.joinAuthoriser(ctx, in)
		if err != nil {
			return "", nil, err
		}
		c["join_authorised_via_users_server"] = via.String()
	}
	content, _ := json.Marshal(c)
	ev, err := s.buildLocal(ctx, in.clone(), pdu.Proto{Type: "m.room.member", StateKey: &sk, Sender: user, Content: content})
	if err != nil {
		return "", nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &m); err != nil {
		return "", nil, fmt.Errorf("building template: %w", err)
	}
	for _, k := range []string{"event_id", "signatures", "hashes", "unsigned"} {
		delete(m, k)
	}
	m["origin"], _ = json.Marshal(user.Homeserver())
	out, err := json.Marshal(m)
	if err != nil {
		return "", nil, fmt.Errorf("building template: %w", err)
	}
	return in.version, out, nil
}

// checkRestrictedJoin reports whether user's join of roomID needs an
// authorising member (the room is restricted or knock_restricted and the
// user is neither joined nor invited), and fails when the user is in none
// of the allowed rooms: M_UNABLE_TO_AUTHORISE_JOIN when this server is in
// none of them either and so cannot tell. It runs before the room's lock
// is taken, since it reads other rooms.
func (s *Service) checkRestrictedJoin(ctx context.Context, roomID id.RoomID, user id.UserID) (bool, error) {
	v, err := s.Version(ctx, roomID)
	if err != nil || !v.RestrictedJoins() {
		return false, err
	}
	jr, err := s.CurrentStateEvent(ctx, roomID, "m.room.join_rules", "")
	if err != nil || jr == nil {
		return false, err
	}
	rule := gjson.GetBytes(jr.Content, "join_rule").Str
	if rule != "restricted" && (rule != "knock_restricted" || !v.KnockRestricted()) {
		return false, nil
	}
	if m, err := s.Membership(ctx, roomID, user); err != nil {
		return false, err
	} else if m == "join" || m == "invite" {
		return false, nil
	}
	known := false
	for _, a := range gjson.GetBytes(jr.Content, "allow").Array() {
		if a.Get("type").Str != "m.room_membership" {
			continue
		}
		allowed := id.RoomID(a.Get("room_id").Str)
		if in, err := s.ServerInRoom(ctx, allowed, s.serverName); err != nil || !in {
			continue
		}
		known = true
		if m, err := s.Membership(ctx, allowed, user); err == nil && m == "join" {
			return true, nil
		}
	}
	if !known {
		return false, mxerr.UnableToAuthoriseJoin.With("this server is in none of the rooms that allow joining %s", roomID)
	}
	return false, mxerr.Forbidden.With("%s is in none of the rooms that allow joining %s", user, roomID)
}

// joinAuthoriser picks a local member of the room who may invite, to
// authorise a restricted join (auth rule 5.3.5.2): the first by user ID,
// so repeated make_joins agree.
func (s *Service) joinAuthoriser(ctx context.Context, in *info) (id.UserID, error) {
	pl, err := s.powerLevels(ctx, in)
	if err != nil {
		return "", err
	}
	var best id.UserID
	for u := range in.localJoined {
		if pl.GetUserLevel(u) >= pl.Invite() && (best == "" || u < best) {
			best = u
		}
	}
	if best == "" {
		return "", mxerr.UnableToGrantJoin.With("no user of this server in the room may invite")
	}
	return best, nil
}

// AuthChain returns the auth chain of the given events: every event
// reachable through auth_events (and, from room version 12, the create
// event every event implies), not including the events themselves unless
// one is in another's chain.
func (s *Service) AuthChain(ctx context.Context, ids []id.EventID) ([]*Stored, error) {
	seen := map[id.EventID]bool{}
	var out []*Stored
	frontier := ids
	first := true
	for len(frontier) > 0 {
		evs, err := s.Events(ctx, frontier)
		if err != nil {
			return nil, err
		}
		frontier = nil
		for _, e := range evs {
			if !first {
				out = append(out, e)
			}
			for _, a := range e.AuthRefs() {
				if !seen[a] {
					seen[a] = true
					frontier = append(frontier, a)
				}
			}
		}
		first = false
	}
	return out, nil
}

// Backfill returns up to limit events of the room reachable backwards from
// (and including) the given events through prev_events, newest first.
func (s *Service) Backfill(ctx context.Context, roomID id.RoomID, from []id.EventID, limit int) ([]*Stored, error) {
	return s.walkBack(ctx, roomID, from, nil, limit)
}

// MissingEvents serves /get_missing_events: events before latest (not
// including them) and after earliest, oldest first, at most limit, not
// below minDepth.
func (s *Service) MissingEvents(ctx context.Context, roomID id.RoomID, earliest, latest []id.EventID, limit int, minDepth int64) ([]*Stored, error) {
	stop := map[id.EventID]bool{}
	for _, e := range earliest {
		stop[e] = true
	}
	latestEvs, err := s.Events(ctx, latest)
	if err != nil {
		return nil, err
	}
	var start []id.EventID
	for _, l := range latestEvs {
		if l.RoomID() == roomID {
			start = append(start, l.PrevEvents...)
		}
	}
	evs, err := s.walkBack(ctx, roomID, start, stop, limit)
	if err != nil {
		return nil, err
	}
	out := evs[:0]
	for _, e := range evs {
		if e.Depth >= minDepth {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Depth < out[j].Depth })
	return out, nil
}

// walkBack does a breadth-first walk over prev_events from start, highest
// depth first, skipping stop events and outliers.
func (s *Service) walkBack(ctx context.Context, roomID id.RoomID, start []id.EventID, stop map[id.EventID]bool, limit int) ([]*Stored, error) {
	seen := map[id.EventID]bool{}
	var out []*Stored
	frontier := start
	for len(frontier) > 0 && len(out) < limit {
		var next []id.EventID
		batch := frontier[:0:0]
		for _, f := range frontier {
			if !seen[f] && !stop[f] {
				seen[f] = true
				batch = append(batch, f)
			}
		}
		evs, err := s.Events(ctx, batch)
		if err != nil {
			return nil, err
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].Depth > evs[j].Depth })
		for _, e := range evs {
			if e.RoomID() != roomID || e.Outlier {
				continue
			}
			if len(out) >= limit {
				break
			}
			out = append(out, e)
			next = append(next, e.PrevEvents...)
		}
		frontier = next
	}
	return out, nil
}

// StoreRemoteInvite records an invite of a local user to a room this
// server is not in (or a local user's knock on one), with the stripped
// state its clients are shown.
func (s *Service) StoreRemoteInvite(ctx context.Context, ev *pdu.Event, inviteState json.RawMessage) error {
	m := ev.Membership()
	if ev.StateKey == nil || id.UserID(*ev.StateKey).Homeserver() != s.serverName || (m != "invite" && m != "knock") {
		return mxerr.BadJSON.With("not an invite or knock of a user on this server")
	}
	user := id.UserID(*ev.StateKey)
	if len(inviteState) == 0 {
		inviteState = json.RawMessage("[]")
	}
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		pos, err := storage.NextID(ctx, tx, "stream", 1)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO remote_invites (user_id, room_id, event_id, room_version, event_json, invite_state)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, room_id)
			DO UPDATE SET event_id = excluded.event_id, room_version = excluded.room_version, event_json = excluded.event_json, invite_state = excluded.invite_state`,
			user.String(), ev.RoomID().String(), ev.ID.String(), string(ev.Version), string(ev.JSON()), string(inviteState)); err != nil {
			return fmt.Errorf("storing invite: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO local_memberships (user_id, room_id, membership, event_id, stream_pos, forgotten)
			VALUES ($1, $2, $5, $3, $4, 0) ON CONFLICT (user_id, room_id)
			DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0`,
			user.String(), ev.RoomID().String(), ev.ID.String(), pos, m); err != nil {
			return fmt.Errorf("storing invite membership: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.notifier.Notify(notifier.Room|notifier.Membership, user)
	return nil
}

// RemoteInvite is an invite to a room this server is not in.
type RemoteInvite struct {
	Event       *pdu.Event
	InviteState json.RawMessage
}

// RemoteInviteFor returns the pending remote invite of user to roomID, or
// nil when there is none.
func (s *Service) RemoteInviteFor(ctx context.Context, user id.UserID, roomID id.RoomID) (*RemoteInvite, error) {
	var evID, version, raw, state string
	err := s.db.QueryRowContext(ctx, `SELECT event_id, room_version, event_json, invite_state FROM remote_invites WHERE user_id = $1 AND room_id = $2`,
		user.String(), roomID.String()).Scan(&evID, &version, &raw, &state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading invite: %w", err)
	}
	ev, err := pdu.ParseTrusted(id.RoomVersion(version), id.EventID(evID), []byte(raw))
	if err != nil {
		return nil, err
	}
	return &RemoteInvite{Event: ev, InviteState: json.RawMessage(state)}, nil
}

// EndRemoteInvite marks a remote invite as left (rejected or retracted),
// with the leave event when there is one.
func (s *Service) EndRemoteInvite(ctx context.Context, user id.UserID, roomID id.RoomID, leaveID id.EventID) error {
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		pos, err := storage.NextID(ctx, tx, "stream", 1)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM remote_invites WHERE user_id = $1 AND room_id = $2`, user.String(), roomID.String()); err != nil {
			return fmt.Errorf("removing invite: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE local_memberships SET membership = 'leave', event_id = $3, stream_pos = $4
			WHERE user_id = $1 AND room_id = $2`, user.String(), roomID.String(), leaveID.String(), pos); err != nil {
			return fmt.Errorf("ending invite: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.notifier.Notify(notifier.Room|notifier.Membership, user)
	return nil
}

// StoreJoin stores the result of joining a room through another server:
// the room's state before our join and its auth chain (as outliers), then
// the join event itself with that state. Every event must already have
// passed the format, hash and signature checks. Stale forward extremities
// from an earlier membership are dropped: they describe a room we were not
// following.
func (s *Service) StoreJoin(ctx context.Context, v id.RoomVersion, join *pdu.Event, state, authChain []*pdu.Event) (*Stored, error) {
	roomID := join.RoomID()
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	if in.exists && in.version != v {
		return nil, fmt.Errorf("room %s is of version %s, not %s", roomID, in.version, v)
	}
	if !in.exists {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO rooms (room_id, room_version, current_snapshot, created_ts) VALUES ($1, $2, 0, $3)
			ON CONFLICT (room_id) DO NOTHING`, roomID.String(), string(v), s.now().UnixMilli()); err != nil {
			return nil, fmt.Errorf("storing room: %w", err)
		}
		in.exists, in.version, in.state = true, v, State{}
		in.servers, in.localJoined = map[string]int{}, map[id.UserID]struct{}{}
	}
	if err := s.StoreOutliers(ctx, roomID, append(append([]*pdu.Event{}, authChain...), state...)); err != nil {
		return nil, err
	}
	ids := make(map[pdu.StateKey]id.EventID, len(state))
	for _, e := range state {
		if e.IsState() && e.RoomID() == roomID {
			ids[e.Key()] = e.ID
		}
	}
	before, err := s.fromIDs(ctx, in, ids)
	if err != nil {
		return nil, err
	}
	if err := s.authorizeOwn(ctx, join); err != nil {
		return nil, mxerr.Forbidden.With("the join event is not allowed by its auth events: %v", err)
	}
	if err := s.authorizeWithState(ctx, in, join, before); err != nil {
		return nil, mxerr.Forbidden.With("the join event is not allowed by the room state: %v", err)
	}
	work := in.clone()
	work.extremities = nil
	var stored *Stored
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM forward_extremities WHERE room_id = $1`, roomID.String()); err != nil {
			return fmt.Errorf("dropping stale extremities: %w", err)
		}
		existing, err := s.Event(ctx, join.ID)
		if err != nil {
			existing = nil
		}
		stored, err = s.persistReceived(ctx, tx, work, join, before, nil, existing, false, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.commit(ctx, in, work, []*Stored{stored})
	return stored, nil
}

// Countersign adds this server's signature to an event of another server.
func (s *Service) Countersign(ev *pdu.Event) (*pdu.Event, error) {
	return ev.Countersign(s.serverName, s.key.ID, s.key.Priv)
}

// StrippedEvent is the stripped form of a state event shown to invited
// and knocking users.
type StrippedEvent struct {
	Content  json.RawMessage `json:"content"`
	Sender   id.UserID       `json:"sender"`
	StateKey string          `json:"state_key"`
	Type     string          `json:"type"`
}

// strippedKeys are the state events a user outside the room is shown.
var strippedKeys = []pdu.StateKey{
	{Type: "m.room.create"}, {Type: "m.room.join_rules"}, {Type: "m.room.name"},
	{Type: "m.room.avatar"}, {Type: "m.room.canonical_alias"}, {Type: "m.room.encryption"},
	{Type: "m.room.topic"},
}

// StrippedState returns the room's current state as the invite_room_state
// and knock_room_state of federation: stripped events, except that the
// create event is the whole PDU (spec v1.16, MSC4311), so the receiving
// server can check that the room is the one it claims to be (in v12 the
// room ID is the create event's hash). The receiving server strips it for
// its clients.
func (s *Service) StrippedState(ctx context.Context, roomID id.RoomID) ([]json.RawMessage, error) {
	st, err := s.CurrentState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	stripped, err := s.Stripped(ctx, st)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(stripped))
	for _, ev := range stripped {
		if ev.Type == "m.room.create" {
			if ref, ok := st[pdu.StateKey{Type: "m.room.create"}]; ok {
				full, err := s.Event(ctx, ref.ID)
				if err != nil {
					return nil, err
				}
				out = append(out, json.RawMessage(full.JSON()))
				continue
			}
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encoding stripped state: %w", err)
		}
		out = append(out, raw)
	}
	return out, nil
}

// Stripped returns the stripped form of st's events that a user outside
// the room is shown, plus those of extra keys.
func (s *Service) Stripped(ctx context.Context, st State, extra ...pdu.StateKey) ([]StrippedEvent, error) {
	out := []StrippedEvent{}
	for _, k := range append(slices.Clip(strippedKeys), extra...) {
		ref, ok := st[k]
		if !ok {
			continue
		}
		ev, err := s.Event(ctx, ref.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, StrippedEvent{Content: json.RawMessage(ev.Content), Sender: ev.Sender, StateKey: *ev.StateKey, Type: ev.Type})
	}
	return out, nil
}

// BuildEvent builds, signs and authorizes a local event against the
// current state without storing it: the first half of an invite of a user
// on another server, whose server must countersign before it is sent.
func (s *Service) BuildEvent(ctx context.Context, p pdu.Proto) (*pdu.Event, error) {
	in, err := s.lockedInfo(ctx, p.RoomID)
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return nil, mxerr.NotFound.With("unknown room")
	}
	return s.buildLocal(ctx, in.clone(), p)
}

// SendBuilt stores an event made by BuildEvent once it is complete. It
// takes the received-event path, since the room may have moved on since
// the event was built, and goes to every other server in the room.
func (s *Service) SendBuilt(ctx context.Context, ev *pdu.Event) (*Stored, error) {
	in, err := s.lockedInfo(ctx, ev.RoomID())
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return nil, mxerr.NotFound.With("unknown room")
	}
	st, err := s.receiveLocked(ctx, in, s.serverName, ev, false, true)
	if err != nil {
		return nil, err
	}
	if st.Rejected || st.SoftFailed {
		return nil, mxerr.Forbidden.With("the event is no longer allowed in the room")
	}
	return st, nil
}

// BackwardExtremities returns events the room's timeline refers to through
// prev_events but does not hold: where history fetched from other servers
// (backfill) continues. At most limit are returned.
func (s *Service) BackwardExtremities(ctx context.Context, roomID id.RoomID, limit int) ([]id.EventID, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT ee.prev_event_id FROM event_edges ee
		JOIN events e ON e.event_nid = ee.event_nid
		WHERE e.room_id = $1 AND e.outlier = 0
		AND NOT EXISTS (SELECT 1 FROM events p WHERE p.event_id = ee.prev_event_id AND p.outlier = 0)
		LIMIT $2`, roomID.String(), limit)
	if err != nil {
		return nil, fmt.Errorf("finding backward extremities of %s: %w", roomID, err)
	}
	defer rows.Close()
	var out []id.EventID
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, err
		}
		out = append(out, id.EventID(e))
	}
	return out, rows.Err()
}

// StoreBackfilled adds history fetched from origin to the start of the
// room's timeline: each event gets a stream position below every other, so
// backward pagination finds it and no sync sees it as new. It does not
// change the current state or forward extremities. Events failing auth
// against their own auth events are stored rejected. The state before a
// backfilled event is not known, so it has none. It returns how many
// events were added.
func (s *Service) StoreBackfilled(ctx context.Context, origin string, roomID id.RoomID, evs []*pdu.Event) (int, error) {
	in, err := s.lockedInfo(ctx, roomID)
	if err != nil {
		return 0, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return 0, mxerr.NotFound.With("unknown room")
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Depth > evs[j].Depth })
	added := 0
	for _, ev := range evs {
		if ev.RoomID() != roomID || ev.Version != in.version {
			continue
		}
		existing, err := s.Event(ctx, ev.ID)
		if err == nil && !existing.Outlier {
			continue
		}
		if err != nil {
			existing = nil
		}
		refs := ev.AuthRefs()
		auth, err := s.Events(ctx, refs)
		if err != nil {
			return added, err
		}
		if len(auth) < len(refs) && s.remote != nil {
			if chain, err := s.remote.GetEventAuth(ctx, origin, roomID, in.version, ev.ID); err == nil {
				if err := s.StoreOutliers(ctx, roomID, chain); err != nil {
					return added, err
				}
			}
		}
		rejected := s.authorizeOwn(ctx, ev) != nil
		ev.PDU.InternalMeta.Rejected = rejected
		err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
			pos, err := storage.NextID(ctx, tx, "outlier", 1)
			if err != nil {
				return err
			}
			if existing != nil {
				if _, err := tx.ExecContext(ctx, `UPDATE events SET outlier = 0, stream_pos = $2, rejected = $3 WHERE event_nid = $1`,
					existing.NID, -pos, storage.Bool(rejected)); err != nil {
					return fmt.Errorf("storing backfilled %s: %w", ev.ID, err)
				}
				return nil
			}
			_, _, err = s.insertEvent(ctx, tx, ev, -pos, 0, rejected, false, false, sql.NullInt64{})
			return err
		})
		if err != nil {
			return added, err
		}
		s.events.Remove(ev.ID)
		if !rejected {
			added++
		}
	}
	return added, nil
}
