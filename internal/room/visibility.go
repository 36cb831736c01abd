package room

import (
	"context"
	"strings"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
)

// The values of m.room.history_visibility (client-server API, "Room
// History Visibility"). Anything else counts as shared.
const (
	visWorldReadable = "world_readable"
	visShared        = "shared"
	visInvited       = "invited"
	visJoined        = "joined"
)

// maxMembershipHops bounds the walk back through a user's membership
// events when looking for their latest join.
const maxMembershipHops = 64

// CanSee reports, for each event, whether user may see it under the
// room's history visibility, per the spec's rules ("Server behaviour" of
// the history visibility module), taken from the state at the event:
//
//  1. world_readable: allow;
//  2. the user's membership was join: allow;
//  3. shared, and the user joined the room at any point after the event:
//     allow;
//  4. the user's membership was invite and the visibility invited: allow;
//  5. otherwise deny.
//
// A history visibility event is visible when the visibility before or
// after it allows it, and so is the user's own member event with their
// membership before or after it. The events may belong to several rooms.
// Callers that return events to clients call this on every path; its
// cost is one state lookup per distinct snapshot, which events share.
func (s *Service) CanSee(ctx context.Context, user id.UserID, evs []*Stored) ([]bool, error) {
	c := s.newVisCache()
	out := make([]bool, len(evs))
	for i, ev := range evs {
		ok, err := c.userSees(ctx, user, ev)
		if err != nil {
			return nil, err
		}
		out[i] = ok
	}
	return out, nil
}

// Visible returns the events of evs that user may see (see CanSee), in
// their order.
func (s *Service) Visible(ctx context.Context, user id.UserID, evs []*Stored) ([]*Stored, error) {
	ok, err := s.CanSee(ctx, user, evs)
	if err != nil {
		return nil, err
	}
	out := make([]*Stored, 0, len(evs))
	for i, ev := range evs {
		if ok[i] {
			out = append(out, ev)
		}
	}
	return out, nil
}

// ServerCanSee reports, for each event, whether another server may see
// it: the visibility at the event was world_readable or shared, or a
// user of that server was joined at the event, or invited when the
// visibility was invited (Synapse's rule for /backfill, /get_missing_events
// and /event). Callers check first that the server is in the room.
func (s *Service) ServerCanSee(ctx context.Context, server string, evs []*Stored) ([]bool, error) {
	c := s.newVisCache()
	out := make([]bool, len(evs))
	for i, ev := range evs {
		ok, err := c.serverSees(ctx, server, ev)
		if err != nil {
			return nil, err
		}
		out[i] = ok
	}
	return out, nil
}

// visCache holds what one visibility check learned, per snapshot: events
// of a timeline share snapshots, so most need no state lookup.
type visCache struct {
	s *Service
	// vis is the history visibility of each snapshot.
	vis map[int64]string
	// members is the membership of the asked user (or server, joined
	// before invited) in each snapshot.
	members map[int64]string
	// chains holds the chain of each state key asked (see chain).
	chains map[chainKey][]*Stored
	memo   entryMemo
}

type chainKey struct {
	room id.RoomID
	key  pdu.StateKey
}

const noJoin = -(1 << 62)

func (s *Service) newVisCache() *visCache {
	return &visCache{s: s, vis: map[int64]string{}, members: map[int64]string{},
		chains: map[chainKey][]*Stored{}, memo: entryMemo{}}
}

// allowed applies rules 1 to 5 to a visibility. The membership at the
// event and rule 3's condition (joinedLater) are asked only when needed:
// under shared visibility a later join decides without the membership.
func allowed(vis string, membership func() (string, error), joinedLater func() (bool, error)) (bool, error) {
	if vis == visWorldReadable {
		return true, nil
	}
	if vis == visShared {
		if ok, err := joinedLater(); err != nil || ok {
			return ok, err
		}
	}
	m, err := membership()
	if err != nil {
		return false, err
	}
	return m == "join" || (vis == visInvited && m == "invite"), nil
}

// is returns a membership that needs no lookup.
func is(m string) func() (string, error) { return func() (string, error) { return m, nil } }

// visibilityOf reads a history visibility event's content; unknown values
// count as shared.
func visibilityOf(content []byte) string {
	switch v := gjson.GetBytes(content, "history_visibility").Str; v {
	case visWorldReadable, visInvited, visJoined:
		return v
	}
	return visShared
}

// chain returns the events that held a state key of the room, newest
// first: the current one, then the one in the state before it, and so on
// while the state before each is known (an outlier or a backfilled event
// ends the walk).
func (c *visCache) chain(ctx context.Context, roomID id.RoomID, key pdu.StateKey) ([]*Stored, error) {
	ck := chainKey{roomID, key}
	if ch, ok := c.chains[ck]; ok {
		return ch, nil
	}
	var out []*Stored
	cur, err := c.s.CurrentStateEvent(ctx, roomID, key.Type, key.StateKey)
	if err != nil {
		return nil, err
	}
	for hops := 0; cur != nil && hops < maxMembershipHops; hops++ {
		out = append(out, cur)
		if cur.Outlier || cur.Snapshot == 0 {
			break
		}
		ref, ok, err := c.s.stateEntryMemo(ctx, cur.Snapshot, key, c.memo)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if cur, err = c.s.Event(ctx, ref.ID); err != nil {
			return nil, err
		}
	}
	c.chains[ck] = out
	return out, nil
}

// unknownStateEntry stands in for the state at an event whose state this
// server does not hold (history fetched by backfill): the newest event of
// key's chain with a lower depth, nil when there is none.
func (c *visCache) unknownStateEntry(ctx context.Context, ev *Stored, key pdu.StateKey) (*Stored, error) {
	ch, err := c.chain(ctx, ev.RoomID(), key)
	if err != nil {
		return nil, err
	}
	for _, e := range ch {
		if e.Depth < ev.Depth && !e.Rejected {
			return e, nil
		}
	}
	return nil, nil
}

// stateKnown reports whether the state before ev is held: every event
// but outliers and backfilled history (the create event has none).
func stateKnown(ev *Stored) bool {
	return !ev.Outlier && (ev.Snapshot != 0 || ev.Type == "m.room.create")
}

// visBefore returns the history visibility before ev.
func (c *visCache) visBefore(ctx context.Context, ev *Stored) (string, error) {
	if stateKnown(ev) {
		return c.visibilityAt(ctx, ev.Snapshot)
	}
	hv, err := c.unknownStateEntry(ctx, ev, pdu.StateKey{Type: "m.room.history_visibility"})
	if err != nil || hv == nil {
		return visShared, err
	}
	return visibilityOf(hv.Content), nil
}

// membershipBefore returns user's membership before ev ("" if none).
func (c *visCache) membershipBefore(ctx context.Context, user id.UserID, ev *Stored) (string, error) {
	if stateKnown(ev) {
		return c.userMembershipAt(ctx, user, ev.Snapshot)
	}
	m, err := c.unknownStateEntry(ctx, ev, pdu.StateKey{Type: "m.room.member", StateKey: user.String()})
	if err != nil || m == nil {
		return "", err
	}
	return m.Membership(), nil
}

// visibilityAt returns the history visibility of a snapshot.
func (c *visCache) visibilityAt(ctx context.Context, snap int64) (string, error) {
	if v, ok := c.vis[snap]; ok {
		return v, nil
	}
	v := visShared
	ref, ok, err := c.s.stateEntryMemo(ctx, snap, pdu.StateKey{Type: "m.room.history_visibility"}, c.memo)
	if err != nil {
		return "", err
	}
	if ok {
		ev, err := c.s.Event(ctx, ref.ID)
		if err != nil {
			return "", err
		}
		v = visibilityOf(ev.Content)
	}
	c.vis[snap] = v
	return v, nil
}

// userMembershipAt returns user's membership in a snapshot ("" if none).
func (c *visCache) userMembershipAt(ctx context.Context, user id.UserID, snap int64) (string, error) {
	if m, ok := c.members[snap]; ok {
		return m, nil
	}
	m := ""
	ref, ok, err := c.s.stateEntryMemo(ctx, snap, pdu.StateKey{Type: "m.room.member", StateKey: user.String()}, c.memo)
	if err != nil {
		return "", err
	}
	if ok {
		ev, err := c.s.Event(ctx, ref.ID)
		if err != nil {
			return "", err
		}
		m = ev.Membership()
	}
	c.members[snap] = m
	return m, nil
}

// latestJoin returns the stream position of user's latest join of the
// room (noJoin when there is none).
func (c *visCache) latestJoin(ctx context.Context, user id.UserID, roomID id.RoomID) (int64, error) {
	ch, err := c.chain(ctx, roomID, pdu.StateKey{Type: "m.room.member", StateKey: user.String()})
	if err != nil {
		return 0, err
	}
	for _, e := range ch {
		if e.Membership() == "join" && !e.Outlier && !e.Rejected {
			return e.StreamPos, nil
		}
	}
	return noJoin, nil
}

func (c *visCache) userSees(ctx context.Context, user id.UserID, ev *Stored) (bool, error) {
	isOwnMember := ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == user.String()
	if ev.Outlier {
		// No state is held at outliers: only the user's own membership
		// (an invite over federation, say) is theirs to see.
		return isOwnMember, nil
	}
	// Everything after a joined user's latest join is theirs (rule 2):
	// the common case needs no state lookup.
	ch, err := c.chain(ctx, ev.RoomID(), pdu.StateKey{Type: "m.room.member", StateKey: user.String()})
	if err != nil {
		return false, err
	}
	if len(ch) > 0 && ch[0].Membership() == "join" && !ch[0].Outlier && ev.StreamPos > ch[0].StreamPos {
		return true, nil
	}
	vis, err := c.visBefore(ctx, ev)
	if err != nil {
		return false, err
	}
	joinedLater := func() (bool, error) {
		j, err := c.latestJoin(ctx, user, ev.RoomID())
		return j > ev.StreamPos, err
	}
	membership := func() (string, error) { return c.membershipBefore(ctx, user, ev) }
	ok, err := allowed(vis, membership, joinedLater)
	if err != nil || ok {
		return ok, err
	}
	// The state after the event, for the events that change what decides.
	switch {
	case ev.Type == "m.room.history_visibility" && ev.StateKey != nil && *ev.StateKey == "" && !ev.Rejected:
		return allowed(visibilityOf(ev.Content), membership, joinedLater)
	case isOwnMember && !ev.Rejected:
		return allowed(vis, is(ev.Membership()), joinedLater)
	}
	return false, nil
}

// serverMembershipAt returns "join" when a user of server is joined in the
// snapshot, else "invite" when one is invited, else "".
func (c *visCache) serverMembershipAt(ctx context.Context, server string, snap int64) (string, error) {
	if m, ok := c.members[snap]; ok {
		return m, nil
	}
	st, _, err := c.s.loadSnapshot(ctx, snap)
	if err != nil {
		return "", err
	}
	var ids []id.EventID
	suffix := ":" + server
	for k, ref := range st {
		if k.Type == "m.room.member" && strings.HasSuffix(k.StateKey, suffix) && id.UserID(k.StateKey).Homeserver() == server {
			ids = append(ids, ref.ID)
		}
	}
	evs, err := c.s.Events(ctx, ids)
	if err != nil {
		return "", err
	}
	m := ""
	for _, e := range evs {
		switch e.Membership() {
		case "join":
			m = "join"
		case "invite":
			if m == "" {
				m = "invite"
			}
		}
	}
	c.members[snap] = m
	return m, nil
}

func (c *visCache) serverSees(ctx context.Context, server string, ev *Stored) (bool, error) {
	if ev.Outlier {
		return false, nil
	}
	vis, err := c.visBefore(ctx, ev)
	if err != nil {
		return false, err
	}
	if vis == visWorldReadable || vis == visShared {
		return true, nil
	}
	membership := ""
	if stateKnown(ev) {
		// Where the state is not held (backfilled history), neither is
		// which of the server's users were in the room: it sees only
		// the redacted copy.
		if membership, err = c.serverMembershipAt(ctx, server, ev.Snapshot); err != nil {
			return false, err
		}
	}
	never := func() (bool, error) { return false, nil }
	if ok, _ := allowed(vis, is(membership), never); ok {
		return true, nil
	}
	switch {
	case ev.Type == "m.room.history_visibility" && ev.StateKey != nil && *ev.StateKey == "" && !ev.Rejected:
		after := visibilityOf(ev.Content)
		if after == visWorldReadable || after == visShared {
			return true, nil
		}
		return allowed(after, is(membership), never)
	case ev.Type == "m.room.member" && ev.StateKey != nil && id.UserID(*ev.StateKey).Homeserver() == server:
		// The server's own users' membership changes are its to see.
		return true, nil
	}
	return false, nil
}
