package spaces

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// Limits of a hierarchy page. Synapse answers at most 50 rooms a page and
// asks at most 3 servers per remote room. The caps on remote rooms and on
// the time spent asking other servers bound a page whose remote children
// are slow, fail or are hidden: the page then ends early, and the rooms
// not yet visited wait for the next one.
const (
	DefaultLimit      = 50
	MaxLimit          = 50
	maxViaPerRoom     = 3
	maxRemotePerPage  = 20
	remoteTimePerPage = 20 * time.Second
	sessionTTL        = 5 * time.Minute
	maxSessions       = 4096
	spaceRoomType     = "m.space"
	remoteCallTimeout = 10 * time.Second
)

// errOverBudget: the page has asked other servers enough.
var errOverBudget = errors.New("remote budget of the page spent")

// budget is what a page may still spend on other servers.
type budget struct {
	rooms    int
	deadline time.Time
}

// NoDepthLimit as HierarchyReq.MaxDepth walks the whole tree (each room
// once, so loops end).
const NoDepthLimit = -1

// HierarchyReq is a request for one page of a space's hierarchy. MaxDepth
// < 0 means no limit; Limit <= 0 means DefaultLimit.
type HierarchyReq struct {
	Root          id.RoomID
	User          id.UserID
	SuggestedOnly bool
	MaxDepth      int
	Limit         int
	From          string
}

// HierarchyPage is the client-server answer.
type HierarchyPage struct {
	Rooms     []Entry `json:"rooms"`
	NextBatch string  `json:"next_batch,omitempty"`
}

// queued is a room waiting to be visited, with the servers its parent
// names and its depth below the root.
type queued struct {
	roomID id.RoomID
	via    []string
	depth  int
}

// session is the state of a walk between pages: the rooms still to visit
// (a stack: the next room is last), those visited, and what other servers
// said about rooms not yet visited.
type session struct {
	user          id.UserID
	root          id.RoomID
	suggestedOnly bool
	maxDepth      int
	queue         []queued
	processed     map[id.RoomID]bool
	// remoteChildren are summaries of children that a remote hierarchy
	// answer included, used instead of asking again.
	remoteChildren map[id.RoomID]Entry
	// inaccessible are rooms a remote server said the requester may not
	// see; they are not asked for again.
	inaccessible map[id.RoomID]bool
	expires      time.Time
}

func (s *session) clone() *session {
	c := *s
	c.queue = slices.Clone(s.queue)
	c.processed = maps.Clone(s.processed)
	c.remoteChildren = maps.Clone(s.remoteChildren)
	c.inaccessible = maps.Clone(s.inaccessible)
	return &c
}

// sessions holds walks between pages in memory, as Synapse does for five
// minutes: a token is opaque, and after a restart or expiry it is refused
// with M_INVALID_PARAM, which clients handle by starting over.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func newSessions() *sessions { return &sessions{m: map[string]*session{}} }

// get returns a copy of the session a token names, so that a client that
// retries a page gets the same page.
func (ss *sessions) get(token string, now time.Time) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[token]
	if !ok || now.After(s.expires) {
		delete(ss.m, token)
		return nil
	}
	return s.clone()
}

func (ss *sessions) put(s *session, now time.Time) string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	s.expires = now.Add(sessionTTL)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		var oldest string
		for t, o := range ss.m {
			if now.After(o.expires) {
				delete(ss.m, t)
			} else if oldest == "" || o.expires.Before(ss.m[oldest].expires) {
				oldest = t
			}
		}
		if len(ss.m) >= maxSessions {
			delete(ss.m, oldest)
		}
	}
	ss.m[token] = s
	return token
}

// Hierarchy returns a page of the space tree under req.Root, depth first
// (GET /_matrix/client/v1/rooms/{roomId}/hierarchy): a space's children
// in the spec's order, each space's subtree before its next sibling, each
// room at most once. Rooms the user may not see are left out, and so is
// what lies below them.
func (s *Service) Hierarchy(ctx context.Context, req HierarchyReq) (HierarchyPage, error) {
	now := s.now()
	// The root is checked on every page, as Synapse does: a user who left
	// or was banned since the first page sees no more of it.
	if err := s.checkRoot(ctx, req.Root, req.User); err != nil {
		return HierarchyPage{}, err
	}
	var sess *session
	if req.From != "" {
		sess = s.sessions.get(req.From, now)
		if sess == nil || sess.user != req.User || sess.root != req.Root {
			return HierarchyPage{}, mxerr.InvalidParam.With("unknown or expired from token")
		}
		if sess.suggestedOnly != req.SuggestedOnly || sess.maxDepth != req.MaxDepth {
			return HierarchyPage{}, mxerr.InvalidParam.With("suggested_only and max_depth cannot change on paginated requests")
		}
	} else {
		sess = &session{
			user: req.User, root: req.Root, suggestedOnly: req.SuggestedOnly, maxDepth: req.MaxDepth,
			queue:          []queued{{roomID: req.Root}},
			processed:      map[id.RoomID]bool{},
			remoteChildren: map[id.RoomID]Entry{},
			inaccessible:   map[id.RoomID]bool{},
		}
	}
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	page := HierarchyPage{Rooms: []Entry{}}
	spend := &budget{rooms: maxRemotePerPage, deadline: now.Add(remoteTimePerPage)}
	for len(sess.queue) > 0 && len(page.Rooms) < limit {
		q := sess.queue[len(sess.queue)-1]
		sess.queue = sess.queue[:len(sess.queue)-1]
		if sess.processed[q.roomID] {
			continue
		}
		entry, children, ok, err := s.visit(ctx, sess, q, spend)
		if errors.Is(err, errOverBudget) {
			// Put back for the next page.
			sess.queue = append(sess.queue, q)
			break
		}
		if err != nil {
			return HierarchyPage{}, err
		}
		sess.processed[q.roomID] = true
		if !ok {
			continue
		}
		page.Rooms = append(page.Rooms, entry)
		if sess.maxDepth < 0 || q.depth < sess.maxDepth {
			// Pushed in reverse, so that the first child is visited next.
			for i := len(children) - 1; i >= 0; i-- {
				c := children[i]
				if !sess.processed[id.RoomID(c.StateKey)] {
					sess.queue = append(sess.queue, queued{roomID: id.RoomID(c.StateKey), via: c.Content.Via, depth: q.depth + 1})
				}
			}
		}
	}
	for len(sess.queue) > 0 && sess.processed[sess.queue[len(sess.queue)-1].roomID] {
		sess.queue = sess.queue[:len(sess.queue)-1]
	}
	if len(sess.queue) > 0 {
		page.NextBatch = s.sessions.put(sess, now)
	}
	return page, nil
}

// checkRoot: the walk starts only at a room this server is in and the user
// may see (403 otherwise, unknown rooms included, as space_hierarchy.yaml
// lists them under 403).
func (s *Service) checkRoot(ctx context.Context, root id.RoomID, user id.UserID) error {
	in, err := s.inRoom(ctx, root)
	if err != nil {
		return err
	}
	if !in {
		return mxerr.Forbidden.With("you are not allowed to view this room")
	}
	l, err := s.loadLocal(ctx, root)
	if err != nil {
		return err
	}
	ok, err := s.userMaySee(ctx, l, user)
	if err != nil {
		return err
	}
	if !ok {
		return mxerr.Forbidden.With("you are not allowed to view this room")
	}
	return nil
}

// visit summarises one room of the walk for the session's user, from local
// state when this server is in the room, else from a remote answer. ok is
// false when the room is left out.
func (s *Service) visit(ctx context.Context, sess *session, q queued, spend *budget) (Entry, []ChildEvent, bool, error) {
	in, err := s.inRoom(ctx, q.roomID)
	if err != nil {
		return Entry{}, nil, false, err
	}
	if in {
		l, err := s.loadLocal(ctx, q.roomID)
		if err != nil {
			return Entry{}, nil, false, err
		}
		ok, err := s.userMaySee(ctx, l, sess.user)
		if err != nil || !ok {
			return Entry{}, nil, false, err
		}
		e, children := l.entry(sess.suggestedOnly)
		return e, children, true, nil
	}
	if sess.inaccessible[q.roomID] {
		return Entry{}, nil, false, nil
	}
	cached, haveCached := sess.remoteChildren[q.roomID]
	atDepth := sess.maxDepth >= 0 && q.depth >= sess.maxDepth
	var e Entry
	switch {
	case haveCached && (cached.RoomType != spaceRoomType || atDepth):
		// A room that is not a space has no children to learn of.
		e = cached
	case s.remote != nil:
		if spend.rooms <= 0 || !s.now().Before(spend.deadline) {
			return Entry{}, nil, false, errOverBudget
		}
		spend.rooms--
		dctx, cancel := context.WithDeadline(ctx, spend.deadline)
		res := s.fetchRemote(dctx, q.roomID, q.via, sess.suggestedOnly)
		cancel()
		if res == nil {
			if !haveCached {
				return Entry{}, nil, false, nil
			}
			e = cached
			break
		}
		for rid, c := range res.children {
			if _, ok := sess.remoteChildren[rid]; !ok {
				sess.remoteChildren[rid] = c
			}
		}
		for _, rid := range res.inaccessible {
			sess.inaccessible[rid] = true
		}
		e = res.room
	default:
		return Entry{}, nil, false, nil
	}
	ok, err := s.remoteMaySee(ctx, e.Summary, sess.user)
	if err != nil || !ok {
		return Entry{}, nil, false, err
	}
	var children []ChildEvent
	if e.RoomType == spaceRoomType {
		children = validChildren(e.ChildrenState, sess.suggestedOnly)
	}
	e.ChildrenState = children
	if e.ChildrenState == nil {
		e.ChildrenState = []ChildEvent{}
	}
	return e, children, true, nil
}

// remoteMaySee applies the visibility rules to a summary from another
// server: open rooms, rooms the user is invited to, and restricted rooms
// that allow a room the user is joined to here.
func (s *Service) remoteMaySee(ctx context.Context, sum Summary, user id.UserID) (bool, error) {
	if open(sum, id.RoomVersion(sum.RoomVersion)) {
		return true, nil
	}
	if user == "" {
		return false, nil
	}
	if m, _, ok, err := s.rooms.LocalMembership(ctx, user, sum.RoomID); err != nil {
		return false, err
	} else if ok && (m.Membership == "invite" || m.Membership == "join") {
		return true, nil
	}
	if inv, err := s.rooms.RemoteInviteFor(ctx, user, sum.RoomID); err != nil || inv != nil {
		return inv != nil, err
	}
	if sum.JoinRule != ruleRestricted && sum.JoinRule != ruleKnockRestricted {
		return false, nil
	}
	return s.joinedAny(ctx, user, sum.AllowedRoomIDs)
}
