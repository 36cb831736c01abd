package search

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// Limits of one search.
const (
	// DefaultLimit is the page size when the filter sets none (Synapse's).
	DefaultLimit = 10
	// MaxLimit caps the page size.
	MaxLimit = 100
	// MaxContext caps before_limit and after_limit.
	MaxContext = 100
	// maxRounds bounds the index queries of one page: when the rows found
	// are mostly hidden from the user, the page ends short with a
	// next_batch to go on from.
	maxRounds = 5
	// maxHighlights bounds the highlights of one page.
	maxHighlights = 50
)

// Group keys (groupings.group_by).
const (
	GroupRoom   = "room_id"
	GroupSender = "sender"
)

// Service answers searches from the index, with room for visibility,
// context and state.
type Service struct {
	ix    *Index
	rooms *room.Service
}

// New returns the search service over ix.
func New(ix *Index, rooms *room.Service) *Service { return &Service{ix: ix, rooms: rooms} }

// Query is a room_events search (search.yaml, "Room Events Criteria"),
// checked by the caller except for NextBatch.
type Query struct {
	Term string
	// Keys are the spec keys to search; empty means all.
	Keys []string
	// Recent orders the newest first (in the order the server stored
	// them); otherwise the most relevant first (rank) among the newest
	// matches (see rankWindow), ties going to the newest.
	Recent bool
	// Rooms (nil: all) and NotRooms narrow the rooms searched; Match, if
	// set, is the rest of the filter, applied to each event found.
	Rooms    *[]id.RoomID
	NotRooms []id.RoomID
	Match    func(*room.Stored) bool
	Limit    int
	// Context, if set, asks for the events around each result.
	Context      *ContextQuery
	IncludeState bool
	GroupBy      []string
	// NextBatch is the next_batch of an earlier page ("" for the first).
	NextBatch string
}

// ContextQuery is event_context.
type ContextQuery struct {
	Before, After  int
	IncludeProfile bool
}

// Result is one page of results.
type Result struct {
	// Count is the number of events the query matches in the rooms
	// searched, before history visibility: an estimate, as the spec allows.
	Count      int
	Highlights []string
	Hits       []Hit
	// State is the state of each room with results, if asked.
	State map[id.RoomID][]*room.Stored
	// Groups maps each group key asked to its groups.
	Groups    map[string]map[string]*Group
	NextBatch string
}

// Hit is one result.
type Hit struct {
	Event   *room.Stored
	Rank    float64
	Context *Context
}

// Context is the events around a result.
type Context struct {
	// Before is newest first, After oldest first.
	Before, After []*room.Stored
	// Start and End are stream positions, /messages tokens.
	Start, End int64
	// Profiles, if asked, holds each sender's display name and avatar
	// from the state after the last event of the context.
	Profiles map[id.UserID]Profile
}

// Profile is a sender's historic profile (profile_info).
type Profile struct {
	DisplayName *string `json:"displayname,omitempty"`
	AvatarURL   *string `json:"avatar_url,omitempty"`
}

// Group is the results of one group value.
type Group struct {
	Results   []id.EventID `json:"results"`
	Order     int          `json:"order"`
	NextBatch string       `json:"next_batch,omitempty"`
}

// batch is what a next_batch token carries: the ordering it belongs to,
// the group it pages within, and where the next page starts.
type batch struct {
	Recent bool   `json:"r,omitempty"`
	Group  string `json:"g,omitempty"`
	Value  string `json:"v,omitempty"`
	// NID, in recent order, is the event_nid the next page lies below.
	NID int64 `json:"n,omitempty"`
	// Offset, in rank order, is how many ranked matches came before.
	Offset int `json:"o,omitempty"`
}

func (b batch) String() string {
	raw, _ := json.Marshal(b)
	return base64.RawURLEncoding.EncodeToString(raw)
}

var errBadBatch = mxerr.InvalidParam.With("invalid next_batch")

// parseBatch reads a next_batch token for q.
func parseBatch(s string, recent bool) (batch, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return batch{}, errBadBatch
	}
	var b batch
	if err := json.Unmarshal(raw, &b); err != nil || b.Recent != recent || b.Offset < 0 || b.Offset >= rankWindow || b.NID < 0 {
		return batch{}, errBadBatch
	}
	switch b.Group {
	case "":
	case GroupRoom, GroupSender:
		if b.Value == "" {
			return batch{}, errBadBatch
		}
	default:
		return batch{}, errBadBatch
	}
	return b, nil
}

// Search runs q for user: only events in rooms the user is or was joined
// to (none after they left), and only those history visibility lets them
// see.
func (s *Service) Search(ctx context.Context, user id.UserID, q Query) (*Result, error) {
	var b batch
	if q.NextBatch != "" {
		var err error
		if b, err = parseBatch(q.NextBatch, q.Recent); err != nil {
			return nil, err
		}
	}
	res := &Result{Highlights: []string{}}
	bounds, err := s.searchable(ctx, user, q, b)
	if err != nil {
		return nil, err
	}
	p := parseTerm(q.Term)
	rendered := s.ix.ft.Query(p.query)
	if len(bounds) == 0 || rendered == "" {
		return res, nil
	}
	f := find{query: rendered, recent: q.Recent}
	if len(q.Keys) > 0 {
		for _, k := range Keys {
			if slices.Contains(q.Keys, k) {
				f.fields = append(f.fields, k)
			}
		}
		if len(f.fields) == len(Keys) {
			f.fields = nil // all: no condition to check per match
		}
	}
	if len(bounds) <= maxRoomsInQuery {
		for r, until := range bounds {
			f.rooms = append(f.rooms, roomBound{room: r, untilNID: until.nid})
		}
		// A stable statement text for the statement cache.
		slices.SortFunc(f.rooms, func(a, b roomBound) int { return strings.Compare(string(a.room), string(b.room)) })
	}
	if b.Group == GroupSender {
		f.sender = id.UserID(b.Value)
	}
	if res.Count, err = s.ix.count(ctx, f, func(r id.RoomID, nid int64) bool {
		until, ok := bounds[r]
		return ok && (until.nid == 0 || nid <= until.nid)
	}); err != nil {
		return nil, err
	}

	limit := q.Limit
	f.before, f.offset = b.NID, b.Offset
	f.limit = max(2*limit, 20)
	// resume is where a next page starts: below an event_nid in recent
	// order, after a number of ranked matches in rank order.
	resume := func(nid int64, offset int) *batch {
		if q.Recent {
			return &batch{Recent: true, NID: nid}
		}
		return &batch{Offset: offset}
	}
	var next *batch
	for round := 0; len(res.Hits) < limit; round++ {
		if round == maxRounds {
			// Go on from here next time.
			next = resume(f.before, f.offset)
			break
		}
		rows, err := s.ix.find(ctx, f)
		if err != nil {
			return nil, err
		}
		hits, err := s.visibleHits(ctx, user, rows, bounds, q.Match)
		if err != nil {
			return nil, err
		}
		for i, row := range rows {
			h, ok := hits[row.eventID]
			if !ok {
				continue
			}
			res.Hits = append(res.Hits, h)
			if len(res.Hits) == limit {
				if i < len(rows)-1 || len(rows) == f.limit {
					next = resume(row.nid, f.offset+i+1)
				}
				break
			}
		}
		if len(res.Hits) == limit || len(rows) < f.limit {
			break
		}
		f.before = rows[len(rows)-1].nid
		f.offset += len(rows)
	}
	if next != nil && next.Offset < rankWindow {
		next.Group, next.Value = b.Group, b.Value
		res.NextBatch = next.String()
	}

	res.Highlights = highlights(p.terms, res.Hits)
	if q.Context != nil {
		for i := range res.Hits {
			c, err := s.context(ctx, user, res.Hits[i].Event, bounds[res.Hits[i].Event.RoomID()].pos, *q.Context)
			if err != nil {
				return nil, err
			}
			res.Hits[i].Context = c
		}
	}
	if q.IncludeState {
		if res.State, err = s.state(ctx, user, res.Hits); err != nil {
			return nil, err
		}
	}
	res.Groups = groups(q.GroupBy, res.Hits, next)
	return res, nil
}

// bound is the last event a user may see in a room they left: its stream
// position, and its event_nid, which the index query bounds the room's
// matches by. A room's events take nids in the order of their positions,
// since one room's events are stored one at a time, except backfilled
// history, which has low positions but new nids: that is left out of a
// room the user left before it was fetched. The zero bound means none.
type bound struct{ pos, nid int64 }

// searchable returns the rooms q searches for user, with the last
// event they may see in each: the rooms they are joined to, and those
// they left or were banned from, up to their departure.
// Forgotten rooms are not searched (LocalMemberships leaves them out).
func (s *Service) searchable(ctx context.Context, user id.UserID, q Query, b batch) (map[id.RoomID]bound, error) {
	ms, err := s.rooms.LocalMemberships(ctx, user, 0)
	if err != nil {
		return nil, err
	}
	out := map[id.RoomID]bound{}
	for _, m := range ms {
		if q.Rooms != nil && !slices.Contains(*q.Rooms, m.RoomID) || slices.Contains(q.NotRooms, m.RoomID) {
			continue
		}
		if b.Group == GroupRoom && m.RoomID != id.RoomID(b.Value) {
			continue
		}
		switch m.Membership {
		case "join":
			out[m.RoomID] = bound{}
		case "leave", "ban":
			// A room left after an invite alone shows nothing: history
			// visibility decides each event.
			b := bound{pos: m.StreamPos, nid: math.MaxInt64}
			if leave, err := s.rooms.Event(ctx, m.EventID); err == nil {
				b.nid = leave.NID
			} else if !errors.Is(err, mxerr.NotFound) {
				return nil, err
			}
			// Without the event, the position alone bounds the room
			// (checked on each match found).
			out[m.RoomID] = b
		}
	}
	return out, nil
}

// visibleHits loads the events of rows and keeps those the user may see
// and the filter matches.
func (s *Service) visibleHits(ctx context.Context, user id.UserID, rows []hitRow, bounds map[id.RoomID]bound, match func(*room.Stored) bool) (map[id.EventID]Hit, error) {
	ids := make([]id.EventID, len(rows))
	rank := make(map[id.EventID]float64, len(rows))
	for i, r := range rows {
		ids[i] = r.eventID
		rank[r.eventID] = r.rank
	}
	evs, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	kept := evs[:0:0]
	for _, ev := range evs {
		until, ok := bounds[ev.RoomID()]
		if !ok || (until.pos != 0 && ev.StreamPos > until.pos) || ev.RedactedBy != "" || ev.Rejected || ev.SoftFailed || ev.Outlier {
			continue
		}
		if match != nil && !match(ev) {
			continue
		}
		kept = append(kept, ev)
	}
	visible, err := s.rooms.Visible(ctx, user, kept)
	if err != nil {
		return nil, err
	}
	out := make(map[id.EventID]Hit, len(visible))
	for _, ev := range visible {
		out[ev.ID] = Hit{Event: ev, Rank: rank[ev.ID]}
	}
	return out, nil
}

// highlights returns the words to highlight: the query's words and the
// words of the results that start with one of them (the stemmer matched
// "running" for "run"; the engines' stemmers are not at hand, so a prefix
// stands in for them).
func highlights(terms []string, hits []Hit) []string {
	out := slices.Clone(terms)
	if out == nil {
		out = []string{}
	}
	for _, h := range hits {
		_, text := Text(h.Event.Type, h.Event.StateKey, h.Event.Content)
		for _, w := range words(text) {
			w = strings.ToLower(strings.Trim(w, "-"))
			for _, t := range terms {
				if len(out) < maxHighlights && strings.HasPrefix(w, t) {
					out = appendNew(out, w)
				}
			}
		}
	}
	return out
}

// context returns the events around ev that user may see, up to until
// (0: no bound), and the senders' profiles if asked (as Synapse: from the
// state after the last event of the context).
func (s *Service) context(ctx context.Context, user id.UserID, ev *room.Stored, until int64, cq ContextQuery) (*Context, error) {
	c := &Context{Start: ev.StreamPos - 1, End: ev.StreamPos}
	if cq.Before > 0 {
		before, err := s.rooms.Timeline(ctx, ev.RoomID(), room.Range{Before: ev.StreamPos, Backwards: true, Limit: cq.Before})
		if err != nil {
			return nil, err
		}
		if len(before) > 0 {
			c.Start = before[len(before)-1].StreamPos - 1
		}
		if c.Before, err = s.rooms.Visible(ctx, user, before); err != nil {
			return nil, err
		}
	}
	if cq.After > 0 {
		rg := room.Range{After: ev.StreamPos, Limit: cq.After}
		if until != 0 {
			rg.Before = until + 1
		}
		after, err := s.rooms.Timeline(ctx, ev.RoomID(), rg)
		if err != nil {
			return nil, err
		}
		if len(after) > 0 {
			c.End = after[len(after)-1].StreamPos
		}
		if c.After, err = s.rooms.Visible(ctx, user, after); err != nil {
			return nil, err
		}
	}
	if c.Before == nil {
		c.Before = []*room.Stored{}
	}
	if c.After == nil {
		c.After = []*room.Stored{}
	}
	if !cq.IncludeProfile {
		return c, nil
	}
	last := ev
	if len(c.After) > 0 {
		last = c.After[len(c.After)-1]
	}
	st, err := s.rooms.StateAt(ctx, last, true)
	if err != nil {
		return nil, fmt.Errorf("loading the state for profiles: %w", err)
	}
	c.Profiles = map[id.UserID]Profile{}
	for _, e := range slices.Concat(c.Before, []*room.Stored{ev}, c.After) {
		if _, done := c.Profiles[e.Sender]; done {
			continue
		}
		ref, ok := st[room.StateKeyOf("m.room.member", e.Sender.String())]
		if !ok {
			continue
		}
		m, err := s.rooms.Event(ctx, ref.ID)
		if err != nil {
			continue // a profile is not worth failing the search
		}
		var p Profile
		if v := gjson.GetBytes(m.Content, "displayname"); v.Type == gjson.String {
			p.DisplayName = &v.Str
		}
		if v := gjson.GetBytes(m.Content, "avatar_url"); v.Type == gjson.String {
			p.AvatarURL = &v.Str
		}
		c.Profiles[e.Sender] = p
	}
	return c, nil
}

// state returns the state of each room with results that user may see:
// the current state while joined, the state at their departure after.
func (s *Service) state(ctx context.Context, user id.UserID, hits []Hit) (map[id.RoomID][]*room.Stored, error) {
	out := map[id.RoomID][]*room.Stored{}
	for _, h := range hits {
		roomID := h.Event.RoomID()
		if _, done := out[roomID]; done {
			continue
		}
		m, _, ok, err := s.rooms.LocalMembership(ctx, user, roomID)
		if err != nil {
			return nil, err
		}
		var st room.State
		if ok && m.Membership != "join" {
			leave, err := s.rooms.Event(ctx, m.EventID)
			if err != nil {
				return nil, err
			}
			st, err = s.rooms.StateAt(ctx, leave, true)
			if err != nil {
				return nil, err
			}
		} else if st, err = s.rooms.CurrentState(ctx, roomID); err != nil {
			return nil, err
		}
		evs, err := s.rooms.StateEvents(ctx, st)
		if err != nil {
			return nil, err
		}
		// A stable order: state is a set.
		slices.SortFunc(evs, func(a, b *room.Stored) int { return cmp.Compare(a.StreamPos, b.StreamPos) })
		if out[roomID], err = s.rooms.Visible(ctx, user, evs); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// groups partitions the hits by each key asked. A group's order is the
// place of its first result in the page (1 first); its next_batch pages
// on within the group, given while the page has a next_batch.
func groups(keys []string, hits []Hit, next *batch) map[string]map[string]*Group {
	if len(keys) == 0 {
		return nil
	}
	out := map[string]map[string]*Group{}
	for _, k := range keys {
		gs := map[string]*Group{}
		for i, h := range hits {
			v := h.Event.RoomID().String()
			if k == GroupSender {
				v = h.Event.Sender.String()
			}
			g := gs[v]
			if g == nil {
				g = &Group{Order: i + 1, Results: []id.EventID{}}
				if next != nil && next.Offset < rankWindow {
					nb := *next
					nb.Group, nb.Value = k, v
					g.NextBatch = nb.String()
				}
				gs[v] = g
			}
			g.Results = append(g.Results, h.Event.ID)
		}
		out[k] = gs
	}
	return out
}
