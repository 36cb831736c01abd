// Package handshake runs the membership handshakes this server starts with
// other servers on behalf of its users: joining a room through a resident
// server (make_join, send_join), inviting a user of another server
// (invite v2), and rejecting an invite to a room this server is not in
// (make_leave, send_leave).
//
// Every event received passes pducheck before room stores it. handshake
// imports room, pdu, pducheck and keys; clientapi calls it.
package handshake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/pducheck"
	"github.com/myelin-chat/myelin/internal/remote"
	"github.com/myelin-chat/myelin/internal/room"
)

// Service runs handshakes.
type Service struct {
	client     remote.Doer
	checker    *pducheck.Checker
	rooms      *room.Service
	serverName string
	key        keys.SigningKey
	log        *slog.Logger
	now        func() time.Time
}

// New returns a handshake Service.
func New(client remote.Doer, checker *pducheck.Checker, rooms *room.Service, serverName string, key keys.SigningKey, log *slog.Logger) *Service {
	return &Service{client: client, checker: checker, rooms: rooms, serverName: serverName, key: key, log: log, now: time.Now}
}

// template is the answer of make_join, make_leave and make_knock.
type template struct {
	RoomVersion id.RoomVersion  `json:"room_version"`
	Event       json.RawMessage `json:"event"`
}

// makeMembership asks server for a membership template. An answer without
// room_version comes from a server older than room versions: the room is
// of version 1 (joins-v1.yaml).
func (s *Service) makeMembership(ctx context.Context, server, op string, roomID id.RoomID, user id.UserID, q url.Values) (template, error) {
	var tmpl template
	if err := s.client.Do(ctx, server, http.MethodGet, roomPath("/_matrix/federation/v1/"+op+"/", roomID, user.String()), q, nil, &tmpl); err != nil {
		return tmpl, remoteError(op, err)
	}
	if tmpl.RoomVersion == "" {
		tmpl.RoomVersion = "1"
	}
	if !pdu.IsSupported(tmpl.RoomVersion) {
		return tmpl, mxerr.UnsupportedRoomVer.With("room version %q is not supported", tmpl.RoomVersion)
	}
	return tmpl, nil
}

// putMembership sends a completed membership event with the v2 endpoint
// op (send_join, send_leave), or with v1 when the server does not know v2,
// whose answer is [200, body] (joins-v1 and leaving-v1 of older specs;
// Synapse falls back the same way).
func (s *Service) putMembership(ctx context.Context, server, op string, ev *pdu.Event, out any) error {
	path := roomPath("/_matrix/federation/v2/"+op+"/", ev.RoomID(), ev.ID.String())
	err := s.client.Do(ctx, server, http.MethodPut, path, nil, json.RawMessage(ev.JSON()), out)
	if !unknownEndpoint(err) {
		return err
	}
	s.log.Info("remote server lacks the v2 endpoint; using v1", "server", server, "op", op)
	var v1 []json.RawMessage
	path = roomPath("/_matrix/federation/v1/"+op+"/", ev.RoomID(), ev.ID.String())
	if err := s.client.Do(ctx, server, http.MethodPut, path, nil, json.RawMessage(ev.JSON()), &v1); err != nil {
		return err
	}
	return decodeV1(server, op, v1, out)
}

// decodeV1 unpacks a v1 answer, [200, body], into out.
func decodeV1(server, op string, v1 []json.RawMessage, out any) error {
	if len(v1) != 2 {
		return fmt.Errorf("%s v1 answer from %s is not [200, {...}]", op, server)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(v1[1], out); err != nil {
		return fmt.Errorf("decoding the %s v1 answer from %s: %w", op, server, err)
	}
	return nil
}

// unknownEndpoint reports whether err says the server does not have the
// endpoint at all: 404 or 405 without a Matrix error or with
// M_UNRECOGNIZED, or 400 M_UNRECOGNIZED.
func unknownEndpoint(err error) bool {
	var fe *fedclient.Error
	if !errors.As(err, &fe) {
		return false
	}
	switch fe.Status {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fe.Code == "" || fe.Code == mxerr.Unrecognized.Code
	case http.StatusBadRequest:
		return fe.Code == mxerr.Unrecognized.Code
	}
	return false
}

// sendJoinResp is the answer of send_join v2.
type sendJoinResp struct {
	State          []json.RawMessage `json:"state"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	Event          json.RawMessage   `json:"event"`
	MembersOmitted bool              `json:"members_omitted"`
}

// supportedVersions is the ver list sent with make_join and make_knock.
func supportedVersions() url.Values {
	q := url.Values{}
	for v := range pdu.Supported {
		q.Add("ver", string(v))
	}
	slices.Sort(q["ver"])
	return q
}

func roomPath(prefix string, roomID id.RoomID, rest string) string {
	return prefix + url.PathEscape(roomID.String()) + "/" + url.PathEscape(rest)
}

// Join joins user to roomID through the first of servers that answers,
// with content as the join event's content (membership is set here).
func (s *Service) Join(ctx context.Context, roomID id.RoomID, user id.UserID, servers []string, content map[string]any) (*room.Stored, error) {
	var st *room.Stored
	err := s.viaServers("join", roomID, servers, func(e *mxerr.Error) bool {
		return e.Code == mxerr.Forbidden.Code || e.Code == mxerr.UnsupportedRoomVer.Code
	}, func(server string) error {
		var err error
		st, err = s.joinVia(ctx, server, roomID, user, content)
		return err
	})
	return st, err
}

// viaServers runs attempt with each of servers in turn (skipping ours and
// repeats) until one succeeds, or fails with an error final says no other
// server would answer differently. what names the handshake in errors.
func (s *Service) viaServers(what string, roomID id.RoomID, servers []string, final func(*mxerr.Error) bool, attempt func(server string) error) error {
	var errs []error
	var lastMatrix error
	tried := map[string]bool{s.serverName: true}
	for _, server := range servers {
		if tried[server] {
			continue
		}
		tried[server] = true
		err := attempt(server)
		if err == nil {
			return nil
		}
		s.log.Info("remote "+what+" failed", "room_id", roomID, "server", server, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
		if e, ok := mxerr.From(err); ok {
			if final(e) {
				return err
			}
			if e.Status >= 400 && e.Status < 500 {
				lastMatrix = err
			}
		}
	}
	if len(errs) == 0 {
		return mxerr.NotFound.With("no server to %s room %s through", what, roomID)
	}
	// A server that answered with a Matrix error (the room is unknown
	// there, the user may not join, the version is not supported) tells
	// the client more than a gateway error would.
	if lastMatrix != nil {
		return lastMatrix
	}
	return mxerr.Unknown.WithStatus(http.StatusBadGateway).With("could not %s room %s through any server", what, roomID).Wrap(errors.Join(errs...))
}

func (s *Service) joinVia(ctx context.Context, server string, roomID id.RoomID, user id.UserID, content map[string]any) (*room.Stored, error) {
	tmpl, err := s.makeMembership(ctx, server, "make_join", roomID, user, supportedVersions())
	if err != nil {
		return nil, err
	}
	ev, err := s.complete(tmpl, user, "join", content)
	if err != nil {
		return nil, err
	}
	if ev.RoomID() != roomID {
		return nil, fmt.Errorf("make_join answered with an event for another room")
	}
	var resp sendJoinResp
	if err := s.putMembership(ctx, server, "send_join", ev, &resp); err != nil {
		return nil, remoteError("send_join", err)
	}
	if len(resp.Event) > 0 {
		// A restricted join comes back signed by the resident server too.
		signed, err := s.checker.Check(ctx, tmpl.RoomVersion, resp.Event)
		if err != nil || signed.ID != ev.ID {
			return nil, fmt.Errorf("send_join returned a bad event: %v", err)
		}
		ev = signed
	}
	state := s.checkAll(ctx, tmpl.RoomVersion, resp.State)
	chain := s.checkAll(ctx, tmpl.RoomVersion, resp.AuthChain)
	return s.rooms.StoreJoin(ctx, tmpl.RoomVersion, ev, state, chain)
}

// complete fills in a membership template for user.
func (s *Service) complete(tmpl template, user id.UserID, membership string, content map[string]any) (*pdu.Event, error) {
	var t struct {
		Type     string    `json:"type"`
		StateKey string    `json:"state_key"`
		Sender   id.UserID `json:"sender"`
		Content  struct {
			// The member of a restricted room who authorises the join,
			// picked by the resident server.
			AuthorisedVia id.UserID `json:"join_authorised_via_users_server"`
		} `json:"content"`
	}
	if err := json.Unmarshal(tmpl.Event, &t); err != nil {
		return nil, fmt.Errorf("decoding template: %w", err)
	}
	if t.Type != "m.room.member" || t.StateKey != user.String() || t.Sender != user {
		return nil, fmt.Errorf("the template is not a membership event of %s", user)
	}
	c := map[string]any{}
	for k, v := range content {
		c[k] = v
	}
	c["membership"] = membership
	if membership == "join" && t.Content.AuthorisedVia != "" {
		c["join_authorised_via_users_server"] = t.Content.AuthorisedVia
	}
	raw, _ := json.Marshal(c)
	return pdu.FromTemplate(tmpl.RoomVersion, tmpl.Event, raw, s.now().UnixMilli(), s.serverName, s.key.ID, s.key.Priv)
}

func (s *Service) checkAll(ctx context.Context, v id.RoomVersion, raws []json.RawMessage) []*pdu.Event {
	out := s.checker.CheckAll(ctx, v, raws)
	if dropped := len(raws) - len(out); dropped > 0 {
		s.log.Info("dropped events of a remote answer that failed their checks", "count", dropped)
	}
	return out
}

// Invite invites target, a user of another server, to roomID: the invite
// is built and authorized here, countersigned by the target's server, then
// stored and sent to the room.
func (s *Service) Invite(ctx context.Context, roomID id.RoomID, sender, target id.UserID, content json.RawMessage) (*room.Stored, error) {
	v, err := s.rooms.Version(ctx, roomID)
	if err != nil {
		return nil, err
	}
	sk := target.String()
	ev, err := s.rooms.BuildEvent(ctx, pdu.Proto{Type: "m.room.member", StateKey: &sk, Sender: sender, Content: content, RoomID: roomID})
	if err != nil {
		return nil, err
	}
	stripped, err := s.rooms.StrippedState(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if me, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.member", sender.String()); err == nil && me != nil {
		raw, err := json.Marshal(room.StrippedEvent{Content: json.RawMessage(me.Content), Sender: me.Sender, StateKey: *me.StateKey, Type: me.Type})
		if err != nil {
			return nil, fmt.Errorf("encoding stripped state: %w", err)
		}
		stripped = append(stripped, raw)
	}
	body := map[string]any{"room_version": v, "event": json.RawMessage(ev.JSON()), "invite_room_state": stripped}
	var resp struct {
		Event json.RawMessage `json:"event"`
	}
	err = s.client.Do(ctx, target.Homeserver(), http.MethodPut, roomPath("/_matrix/federation/v2/invite/", roomID, ev.ID.String()), nil, body, &resp)
	if unknownEndpoint(err) && (v == "1" || v == "2") {
		// A server older than invite v2 can only take rooms of versions
		// 1 and 2, whose invites v1 carries as the bare event.
		err = s.inviteV1(ctx, target.Homeserver(), ev, stripped, &resp)
	}
	if err != nil {
		return nil, remoteError("invite", err)
	}
	signed, err := s.checker.Check(ctx, v, resp.Event)
	if err != nil {
		return nil, mxerr.Unknown.WithStatus(http.StatusBadGateway).With("the invitee's server returned a bad event").Wrap(err)
	}
	if signed.ID != ev.ID {
		return nil, mxerr.Unknown.WithStatus(http.StatusBadGateway).With("the invitee's server changed the invite")
	}
	if _, ok := signed.Signatures[target.Homeserver()]; !ok {
		return nil, mxerr.Unknown.WithStatus(http.StatusBadGateway).With("the invitee's server did not sign the invite")
	}
	return s.rooms.SendBuilt(ctx, signed)
}

// inviteV1 sends an invite with PUT /_matrix/federation/v1/invite
// (invites-v1.yaml): the event itself, with the stripped state in its
// unsigned section.
func (s *Service) inviteV1(ctx context.Context, server string, ev *pdu.Event, stripped []json.RawMessage, out any) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &m); err != nil {
		return fmt.Errorf("encoding the v1 invite: %w", err)
	}
	unsigned := map[string]json.RawMessage{}
	if raw, ok := m["unsigned"]; ok {
		_ = json.Unmarshal(raw, &unsigned)
	}
	unsigned["invite_room_state"], _ = json.Marshal(stripped)
	m["unsigned"], _ = json.Marshal(unsigned)
	var v1 []json.RawMessage
	if err := s.client.Do(ctx, server, http.MethodPut, roomPath("/_matrix/federation/v1/invite/", ev.RoomID(), ev.ID.String()), nil, m, &v1); err != nil {
		return err
	}
	return decodeV1(server, "invite", v1, out)
}

// RejectInvite declines an invite to a room this server is not in,
// through the inviting server. If that server cannot be reached, the
// invite is still dropped here.
func (s *Service) RejectInvite(ctx context.Context, user id.UserID, roomID id.RoomID) error {
	inv, err := s.rooms.RemoteInviteFor(ctx, user, roomID)
	if err != nil {
		return err
	}
	if inv == nil {
		return mxerr.NotFound.With("no invite to room %s", roomID)
	}
	leaveID, err := s.leaveVia(ctx, inv.Event.Sender.Homeserver(), roomID, user)
	if err != nil {
		s.log.Info("remote invite rejection failed; dropping the invite locally", "room_id", roomID, "err", err)
	}
	return s.rooms.EndRemoteInvite(ctx, user, roomID, leaveID)
}

func (s *Service) leaveVia(ctx context.Context, server string, roomID id.RoomID, user id.UserID) (id.EventID, error) {
	tmpl, err := s.makeMembership(ctx, server, "make_leave", roomID, user, nil)
	if err != nil {
		return "", err
	}
	ev, err := s.complete(tmpl, user, "leave", nil)
	if err != nil {
		return "", err
	}
	var resp json.RawMessage
	if err := s.putMembership(ctx, server, "send_leave", ev, &resp); err != nil {
		return "", remoteError("send_leave", err)
	}
	return ev.ID, nil
}

// ResolveAlias asks the alias's server for the room and its servers.
func (s *Service) ResolveAlias(ctx context.Context, alias id.RoomAlias, server string) (id.RoomID, []string, error) {
	var resp struct {
		RoomID  id.RoomID `json:"room_id"`
		Servers []string  `json:"servers"`
	}
	if err := s.client.Do(ctx, server, http.MethodGet, "/_matrix/federation/v1/query/directory", url.Values{"room_alias": {alias.String()}}, nil, &resp); err != nil {
		return "", nil, remoteError("query/directory", err)
	}
	return resp.RoomID, resp.Servers, nil
}

// QueryProfile asks user's server for their profile, or one field of it
// when field is not empty (query.yaml, getQueryProfile).
func (s *Service) QueryProfile(ctx context.Context, user id.UserID, field string) (map[string]any, error) {
	q := url.Values{"user_id": {user.String()}}
	if field != "" {
		q.Set("field", field)
	}
	resp := map[string]any{}
	if err := s.client.Do(ctx, user.Homeserver(), http.MethodGet, "/_matrix/federation/v1/query/profile", q, nil, &resp); err != nil {
		return nil, remoteError("query/profile", err)
	}
	return resp, nil
}

// remoteError passes on a Matrix error of the remote server (a 403 stays
// a 403 for the client) and wraps anything else as a gateway error.
func remoteError(op string, err error) error {
	if errors.Is(err, fedclient.ErrInvalidServerName) {
		return mxerr.InvalidParam.With("%v", err).Wrap(err)
	}
	var fe *fedclient.Error
	if errors.As(err, &fe) && fe.Status >= 400 && fe.Status < 500 && fe.Code != "" {
		return &mxerr.Error{Code: fe.Code, Status: fe.Status, Message: fmt.Sprintf("remote server: %s", fe.Message), Cause: err}
	}
	return mxerr.Unknown.WithStatus(http.StatusBadGateway).With("%s failed on the remote server", op).Wrap(err)
}

// Backfill asks the room's other servers for history before the oldest
// events held here, and stores what one of them returns. It returns how
// many events were added (0 when there is nothing further back).
func (s *Service) Backfill(ctx context.Context, roomID id.RoomID, limit int) (int, error) {
	from, err := s.rooms.BackwardExtremities(ctx, roomID, 20)
	if err != nil || len(from) == 0 {
		return 0, err
	}
	v, err := s.rooms.Version(ctx, roomID)
	if err != nil {
		return 0, err
	}
	servers, err := s.rooms.Servers(ctx, roomID)
	if err != nil {
		return 0, err
	}
	q := url.Values{"limit": {fmt.Sprint(min(max(limit, 1), 100))}}
	for _, e := range from {
		q.Add("v", e.String())
	}
	var lastErr error
	for _, server := range servers {
		if server == s.serverName {
			continue
		}
		var resp struct {
			PDUs []json.RawMessage `json:"pdus"`
		}
		if err := s.client.Do(ctx, server, http.MethodGet, "/_matrix/federation/v1/backfill/"+url.PathEscape(roomID.String()), q, nil, &resp); err != nil {
			lastErr = err
			continue
		}
		return s.rooms.StoreBackfilled(ctx, server, roomID, s.checkAll(ctx, v, resp.PDUs))
	}
	return 0, lastErr
}

// PublicRooms asks server for a page of its public room directory.
func (s *Service) PublicRooms(ctx context.Context, server string, limit int, since, search string) (json.RawMessage, error) {
	var resp json.RawMessage
	var err error
	if search == "" {
		q := url.Values{}
		if limit > 0 {
			q.Set("limit", fmt.Sprint(limit))
		}
		if since != "" {
			q.Set("since", since)
		}
		err = s.client.Do(ctx, server, http.MethodGet, "/_matrix/federation/v1/publicRooms", q, nil, &resp)
	} else {
		body := map[string]any{"filter": map[string]string{"generic_search_term": search}}
		if limit > 0 {
			body["limit"] = limit
		}
		if since != "" {
			body["since"] = since
		}
		err = s.client.Do(ctx, server, http.MethodPost, "/_matrix/federation/v1/publicRooms", nil, body, &resp)
	}
	if err != nil {
		return nil, remoteError("publicRooms", err)
	}
	return resp, nil
}

// Knock knocks on roomID for user through the first of servers that
// answers (make_knock, send_knock), and keeps the stripped state the
// resident server returns for user's clients.
func (s *Service) Knock(ctx context.Context, roomID id.RoomID, user id.UserID, servers []string, content map[string]any) error {
	return s.viaServers("knock on", roomID, servers, func(e *mxerr.Error) bool {
		return e.Status >= 400 && e.Status < 500
	}, func(server string) error {
		return s.knockVia(ctx, server, roomID, user, content)
	})
}

func (s *Service) knockVia(ctx context.Context, server string, roomID id.RoomID, user id.UserID, content map[string]any) error {
	tmpl, err := s.makeMembership(ctx, server, "make_knock", roomID, user, supportedVersions())
	if err != nil {
		return err
	}
	ev, err := s.complete(tmpl, user, "knock", content)
	if err != nil {
		return err
	}
	var resp struct {
		KnockRoomState json.RawMessage `json:"knock_room_state"`
	}
	if err := s.client.Do(ctx, server, http.MethodPut, roomPath("/_matrix/federation/v1/send_knock/", roomID, ev.ID.String()), nil, json.RawMessage(ev.JSON()), &resp); err != nil {
		return remoteError("send_knock", err)
	}
	return s.rooms.StoreRemoteInvite(ctx, ev, resp.KnockRoomState)
}
