package federationapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
)

// makeJoin handles GET /_matrix/federation/v1/make_join/{roomId}/{userId}
// (joins-v1.yaml).
func (a *API) makeJoin(w http.ResponseWriter, r *http.Request) error {
	return a.makeMembership(w, r, "join", true)
}

// makeMembership serves make_join, make_leave and make_knock: a template
// event for a user of the requesting server.
func (a *API) makeMembership(w http.ResponseWriter, r *http.Request, membership string, checkVersion bool) error {
	ctx := r.Context()
	origin := Origin(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	user := id.UserID(r.PathValue("userId"))
	if _, _, err := user.Parse(); err != nil {
		return mxerr.InvalidParam.With("invalid user ID %q", user)
	}
	if user.Homeserver() != origin {
		return mxerr.Forbidden.With("user %s does not belong to server %s", user, origin)
	}
	v, err := a.rooms.Version(ctx, roomID)
	if err != nil {
		return err
	}
	if checkVersion {
		supported := r.URL.Query()["ver"]
		if len(supported) == 0 {
			supported = []string{"1"}
		}
		if !slices.Contains(supported, string(v)) {
			return mxerr.IncompatibleRoomVer.With("the room is of version %s, which your server does not support", v).
				WithField("room_version", string(v))
		}
	}
	if err := a.checkACL(ctx, roomID, origin); err != nil {
		return err
	}
	v, tmpl, err := a.rooms.MembershipTemplate(ctx, roomID, user, membership)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"room_version": v, "event": tmpl})
}

// sendJoinResp is the answer of send_join v2.
type sendJoinResp struct {
	Origin         string            `json:"origin"`
	State          []json.RawMessage `json:"state"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	MembersOmitted bool              `json:"members_omitted"`
	ServersInRoom  []string          `json:"servers_in_room,omitempty"`
	// Event is the join signed by this server too, for restricted joins.
	Event json.RawMessage `json:"event,omitempty"`
}

// sendJoinV2 handles PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
// (joins-v2.yaml): the join goes through the room path and on to the
// other servers in the room; the joining server gets the state before it
// and the auth chain. With omit_members, member events other than the
// heroes' are left out (a partial-state join).
func (a *API) sendJoinV2(w http.ResponseWriter, r *http.Request) error {
	resp, err := a.sendJoin(r)
	if err != nil {
		return err
	}
	return httpx.OK(w, resp)
}

// sendJoinV1 handles PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}
// (dropped from the spec's joins-v1.yaml, still served by Synapse for
// older servers): send_join v2 with the answer as [200, body].
func (a *API) sendJoinV1(w http.ResponseWriter, r *http.Request) error {
	resp, err := a.sendJoin(r)
	if err != nil {
		return err
	}
	return httpx.OK(w, []any{200, resp})
}

func (a *API) sendJoin(r *http.Request) (*sendJoinResp, error) {
	ctx := r.Context()
	stored, err := a.receiveMembership(r, "join")
	if err != nil {
		return nil, err
	}
	before, err := a.rooms.StateAt(ctx, stored, false)
	if err != nil {
		return nil, err
	}
	omit := r.URL.Query().Get("omit_members") == "true"
	var keep []id.EventID
	var servers []string
	if omit {
		heroes := a.heroes(ctx, stored.RoomID(), before)
		for k, ref := range before {
			if k.Type != "m.room.member" || heroes[id.UserID(k.StateKey)] {
				keep = append(keep, ref.ID)
			}
		}
		if servers, err = a.rooms.Servers(ctx, stored.RoomID()); err != nil {
			return nil, err
		}
	} else {
		for _, ref := range before {
			keep = append(keep, ref.ID)
		}
	}
	stateEvs, err := a.rooms.Events(ctx, keep)
	if err != nil {
		return nil, err
	}
	chain, err := a.rooms.AuthChain(ctx, append(slices.Clone(keep), stored.ID))
	if err != nil {
		return nil, err
	}
	resp := &sendJoinResp{Origin: a.serverName, MembersOmitted: omit, ServersInRoom: servers,
		State: jsonOf(stateEvs), AuthChain: jsonOf(chain)}
	if a.vouchedFor(stored) {
		resp.Event = json.RawMessage(stored.JSON())
	}
	return resp, nil
}

// heroes picks the members a partial-state joiner needs to name the room:
// up to five joined or invited members, the creator, when the room has no
// name or canonical alias.
func (a *API) heroes(ctx context.Context, roomID id.RoomID, st room.State) map[id.UserID]bool {
	out := map[id.UserID]bool{}
	if _, ok := st[pdu.StateKey{Type: "m.room.name"}]; ok {
		return out
	}
	if _, ok := st[pdu.StateKey{Type: "m.room.canonical_alias"}]; ok {
		return out
	}
	var ids []id.EventID
	for k, ref := range st {
		if k.Type == "m.room.member" {
			ids = append(ids, ref.ID)
		}
	}
	evs, err := a.rooms.Events(ctx, ids)
	if err != nil {
		return out
	}
	slices.SortFunc(evs, func(x, y *room.Stored) int {
		if *x.StateKey < *y.StateKey {
			return -1
		}
		return 1
	})
	for _, e := range evs {
		if m := e.Membership(); (m == "join" || m == "invite") && len(out) < 5 {
			out[id.UserID(*e.StateKey)] = true
		}
	}
	return out
}

// receiveMembership checks a membership event handed over by send_join,
// send_leave or send_knock and runs it through the room path.
func (a *API) receiveMembership(r *http.Request, membership string) (*room.Stored, error) {
	ctx := r.Context()
	origin := Origin(ctx)
	roomID, err := pathRoomID(r)
	if err != nil {
		return nil, err
	}
	v, err := a.rooms.Version(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if err := a.checkACL(ctx, roomID, origin); err != nil {
		return nil, err
	}
	raw, err := httpx.ReadBody(r)
	if err != nil {
		return nil, err
	}
	if membership == "join" {
		raw = a.vouchForJoin(v, raw)
	}
	ev, err := a.checker.Check(ctx, v, raw)
	if err != nil {
		return nil, mxerr.BadJSON.With("invalid event: %v", err)
	}
	switch {
	case ev.ID.String() != r.PathValue("eventId"):
		return nil, mxerr.BadJSON.With("the event ID is %s, not %s", ev.ID, r.PathValue("eventId"))
	case ev.RoomID() != roomID:
		return nil, mxerr.BadJSON.With("the event is for another room")
	case ev.Type != "m.room.member" || ev.StateKey == nil || *ev.StateKey != ev.Sender.String():
		return nil, mxerr.BadJSON.With("not a membership event of its sender")
	case ev.Membership() != membership:
		return nil, mxerr.BadJSON.With("membership is %q, not %q", ev.Membership(), membership)
	case ev.Sender.Homeserver() != origin:
		return nil, mxerr.Forbidden.With("the sender does not belong to server %s", origin)
	}
	return a.rooms.ReceiveMembership(ctx, origin, ev)
}

// vouchForJoin adds this server's signature to a restricted join that
// names one of its users as join_authorised_via_users_server (the user
// make_join picked): auth rule 5.2.1 wants it, and send_join returns the
// signed event to the joining server. The checks and auth rules that
// follow still decide whether the join is allowed.
func (a *API) vouchForJoin(v id.RoomVersion, raw []byte) []byte {
	if !v.RestrictedJoins() {
		return raw
	}
	ev, err := pdu.ParseIncoming(v, raw)
	if err != nil {
		return raw
	}
	via := id.UserID(gjson.GetBytes(ev.Content, "join_authorised_via_users_server").Str)
	if via == "" || via.Homeserver() != a.serverName || len(ev.Signatures[a.serverName]) > 0 {
		return raw
	}
	signed, err := a.rooms.Countersign(ev)
	if err != nil {
		return raw
	}
	return signed.JSON()
}

// vouchedFor reports whether a stored join carries our signature as its
// authorising server, so send_join returns it.
func (a *API) vouchedFor(ev *room.Stored) bool {
	via := id.UserID(gjson.GetBytes(ev.Content, "join_authorised_via_users_server").Str)
	return via != "" && via.Homeserver() == a.serverName && ev.Sender.Homeserver() != a.serverName
}

func jsonOf(evs []*room.Stored) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(evs))
	for _, e := range evs {
		out = append(out, json.RawMessage(e.JSON()))
	}
	return out
}
