package slidingsync

import (
	"context"
	"maps"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/notifications"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/room"
)

// build holds one response while it is assembled.
type build struct {
	req *Req
	// lists and ext are the request's lists and extension configs, with
	// what the connection kept of earlier requests (see stickyExtensions).
	lists  map[string]ListReq
	ext    ExtensionsReq
	user   id.UserID
	device id.DeviceID
	base   *connState
	next   *connState
	// now is the stream position the response covers; since the one the
	// connection's last response covered (0 for a new connection).
	now, since int64
	wake       clientsync.Wake
	// changed holds the kinds of change notified since the base state
	// was built; sections of other kinds cannot have news.
	changed     notifier.Kind
	memberships []room.Membership
	ignored     map[id.UserID]bool
	// unread holds the user's notification counts by room.
	unread map[id.RoomID]*notifications.RoomCounts
	viewer room.Viewer

	allAccountData *[]accountdata.Entry
	facts          facts
	wanted         map[id.RoomID]*wanted
	order          []id.RoomID
	// latest holds the newest event position of each wanted room the
	// client has, where it may have moved since the client got it.
	latest map[id.RoomID]int64

	// The timelines of every room, decorated in one batch at the end.
	tlEvs []*room.Stored
	tlOut []room.ClientEvent
}

// wanted is a room the response covers, with the merged details of every
// list and subscription that asks for it.
type wanted struct {
	c     candidate
	limit int
	// required and exclude are the union of the configs' pairs (so an
	// exclusion of one config applies to the others too: rare, and only
	// ever sends less).
	required   [][]string
	exclude    [][]string
	lists      []string
	subscribed bool
}

// want adds c to the response with details d, on behalf of list (""
// for a subscription). A room several ask for gets the largest timeline
// and the union of the required state, as in Synapse.
func (b *build) want(c candidate, d RoomDetails, list string) {
	w := b.wanted[c.m.RoomID]
	if w == nil {
		w = &wanted{c: c}
		b.wanted[c.m.RoomID] = w
		b.order = append(b.order, c.m.RoomID)
	}
	w.limit = max(w.limit, d.TimelineLimit)
	w.required = addPairs(w.required, d.RequiredState.Include)
	w.exclude = addPairs(w.exclude, d.RequiredState.Exclude)
	if list == "" {
		w.subscribed = true
	} else if !slices.Contains(w.lists, list) {
		w.lists = append(w.lists, list)
	}
}

// addPairs adds the pairs of add that list lacks.
func addPairs(list, add [][]string) [][]string {
	for _, pair := range add {
		if !slices.ContainsFunc(list, func(p []string) bool { return p[0] == pair[0] && p[1] == pair[1] }) {
			list = append(list, pair)
		}
	}
	return list
}

// stateConfig is the key of the state the room is sent with: the client
// has its state as required_state asked, so asking for other state sends
// it again.
func (w *wanted) stateConfig() string {
	key := func(pairs [][]string) string {
		keys := make([]string, len(pairs))
		for i, p := range pairs {
			keys[i] = p[0] + "\x00" + p[1]
		}
		slices.Sort(keys)
		return strings.Join(keys, "\x01")
	}
	return key(w.required) + "\x02" + key(w.exclude)
}

// build assembles the response to r from base, as of the database now.
// It returns the state the response leaves the connection in, and whether
// the response has news (a long-poll with none waits).
func (s *Service) build(ctx context.Context, r Request, base *connState, wake clientsync.Wake) (*Resp, *connState, bool, error) {
	now, err := s.db.CurrentID(ctx, "stream")
	if err != nil {
		return nil, nil, false, err
	}
	b := &build{req: &r.Body, user: r.User, device: r.Device, base: base, now: now, since: min(base.pos, now), wake: wake,
		viewer: room.Viewer{User: r.User, Device: r.Device}, wanted: map[id.RoomID]*wanted{}, latest: map[id.RoomID]int64{},
		facts: facts{children: map[id.RoomID]map[id.RoomID]bool{}, encrypted: map[id.RoomID]bool{}, roomType: map[id.RoomID]*string{}}}
	b.changed = notifier.All
	if !base.fresh && base.wake != (clientsync.Wake{}) {
		b.changed = s.sync.ChangedSince(r.User, base.wake)
	}
	b.next = base.child()
	// Lists are not sticky (clients send them whole), but a request that
	// has none keeps the connection's.
	b.lists = r.Body.Lists
	if b.lists == nil {
		b.lists = base.lists
	}
	b.ext = stickyExtensions(base.ext, r.Body.Extensions)
	b.next.lists, b.next.ext = b.lists, b.ext
	b.next.pos, b.next.wake, b.next.typing = now, wake, s.typing.Serial()

	if b.memberships, err = s.memberships(ctx, r.User, wake); err != nil {
		return nil, nil, false, err
	}
	if b.ignored, err = s.sync.IgnoredUsers(ctx, r.User, wake); err != nil {
		return nil, nil, false, err
	}
	if b.unread, err = s.sync.UnreadCounts(ctx, r.User, now); err != nil {
		return nil, nil, false, err
	}
	cands, err := s.candidates(ctx, b)
	if err != nil {
		return nil, nil, false, err
	}
	resp := &Resp{Lists: map[string]ListResp{}, Rooms: map[id.RoomID]*RoomResp{}}
	if err := s.windows(ctx, b, cands, resp); err != nil {
		return nil, nil, false, err
	}
	s.subscriptions(b, cands)
	if err := s.findChanges(ctx, b); err != nil {
		return nil, nil, false, err
	}
	for _, roomID := range b.order {
		w := b.wanted[roomID]
		rr, sent, err := s.room(ctx, b, w)
		if err != nil {
			return nil, nil, false, err
		}
		b.next.rooms[roomID] = sent
		if rr != nil {
			resp.Rooms[roomID] = rr
		}
	}
	s.rooms.Decorate(ctx, b.viewer, b.tlEvs, b.tlOut)
	extNews, err := s.extensions(ctx, b, resp)
	if err != nil {
		return nil, nil, false, err
	}
	news := base.fresh || len(resp.Rooms) > 0 || extNews || !maps.Equal(base.counts, b.next.counts)
	return resp, b.next, news, nil
}

// cachedMemberships is a user's membership list as of a notifier
// generation. Shared: never change it.
type cachedMemberships struct {
	wake clientsync.Wake
	list []room.Membership
}

// memberships returns the user's memberships, from the cache until a
// membership change is notified after it was filled. /sync's own cache
// keeps only users of at most a hundred rooms; sliding sync is for the
// users with many more, and every connection of a user shares the entry.
func (s *Service) memberships(ctx context.Context, user id.UserID, wake clientsync.Wake) ([]room.Membership, error) {
	if c, ok := s.memberCache.Get(user); ok && s.sync.ChangedSince(user, c.wake)&notifier.Membership == 0 {
		return c.list, nil
	}
	list, err := s.sync.Memberships(ctx, user, wake)
	if err != nil {
		return nil, err
	}
	s.memberCache.Add(user, cachedMemberships{wake: wake, list: list})
	return list, nil
}

// subscriptions applies the request's subscriptions and unsubscriptions to
// the sticky set, and adds the subscribed rooms the user has a membership
// in to the response.
func (s *Service) subscriptions(b *build, cands []candidate) {
	for _, roomID := range b.req.UnsubscribeRooms {
		delete(b.next.subs, roomID)
	}
	for roomID, d := range b.req.RoomSubscriptions {
		b.next.subs[roomID] = d
	}
	if len(b.next.subs) == 0 {
		return
	}
	byRoom := make(map[id.RoomID]candidate, len(cands))
	for _, c := range cands {
		byRoom[c.m.RoomID] = c
	}
	// Sorted, so responses do not depend on map order.
	for _, roomID := range slices.Sorted(maps.Keys(b.next.subs)) {
		c, ok := byRoom[roomID]
		if !ok {
			// A room the user left long ago (or never was in): history
			// visibility would hide most of it; Synapse leaves it out too.
			continue
		}
		b.want(c, b.next.subs[roomID], "")
	}
}

// findChanges finds, for the wanted rooms the client already has, the
// newest event position of each, in one look-up. Rooms it had up to the
// last response need no look-up when nothing happened to the user's rooms
// since.
func (s *Service) findChanges(ctx context.Context, b *build) error {
	var check []id.RoomID
	from := b.now
	for _, roomID := range b.order {
		sent, ok := b.base.rooms[roomID]
		if !ok || sent.pos >= b.now {
			continue
		}
		if sent.pos >= b.since && b.changed&(notifier.Room|notifier.Membership) == 0 {
			continue
		}
		check = append(check, roomID)
		from = min(from, sent.pos)
	}
	if len(check) == 0 {
		return nil
	}
	latest, err := s.rooms.LatestPositionsSince(ctx, check, from, b.now)
	if err != nil {
		return err
	}
	b.latest = latest
	return nil
}
