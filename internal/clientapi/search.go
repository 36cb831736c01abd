package clientapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/search"
)

// WithSearch serves POST /search from s.
func WithSearch(s *search.Service) Option { return func(a *API) { a.searcher = s } }

// roomEventsCriteria is search_categories.room_events of a /search body.
type roomEventsCriteria struct {
	SearchTerm   *string         `json:"search_term"`
	Keys         []string        `json:"keys"`
	Filter       json.RawMessage `json:"filter"`
	OrderBy      *string         `json:"order_by"`
	EventContext *struct {
		BeforeLimit    *int `json:"before_limit"`
		AfterLimit     *int `json:"after_limit"`
		IncludeProfile bool `json:"include_profile"`
	} `json:"event_context"`
	IncludeState bool `json:"include_state"`
	Groupings    *struct {
		GroupBy []struct {
			Key string `json:"key"`
		} `json:"group_by"`
	} `json:"groupings"`
}

// search serves POST /_matrix/client/v3/search (search.yaml): full-text
// search of the room_events category, the only one the spec defines.
// Pagination follows the next_batch query parameter, within a group when
// the token came from one.
func (a *API) search(w http.ResponseWriter, r *http.Request) error {
	if a.searcher == nil {
		return mxerr.Unrecognized.With("search is not enabled")
	}
	var req struct {
		SearchCategories map[string]json.RawMessage `json:"search_categories"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.SearchCategories == nil {
		return mxerr.MissingParam.With("search_categories is required")
	}
	for cat := range req.SearchCategories {
		if cat != "room_events" {
			return mxerr.InvalidParam.With("unknown search category %q", cat)
		}
	}
	raw, ok := req.SearchCategories["room_events"]
	if !ok || isNull(raw) {
		return httpx.OK(w, map[string]any{"search_categories": map[string]any{}})
	}
	var crit roomEventsCriteria
	if err := httpx.Unmarshal(raw, &crit); err != nil {
		return err
	}
	q, err := searchQuery(&crit)
	if err != nil {
		return err
	}
	q.NextBatch = r.URL.Query().Get("next_batch")
	res, err := a.searcher.Search(r.Context(), session(r).UserID, q)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"search_categories": map[string]any{"room_events": a.renderSearch(r, res)}})
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// searchQuery checks the criteria and makes the query of them.
func searchQuery(c *roomEventsCriteria) (search.Query, error) {
	var q search.Query
	if c.SearchTerm == nil {
		return q, mxerr.MissingParam.With("search_term is required")
	}
	q.Term = *c.SearchTerm
	for _, k := range c.Keys {
		if !slices.Contains(search.Keys, k) {
			return q, mxerr.InvalidParam.With("unknown key %q: keys are content.body, content.name and content.topic", k)
		}
		q.Keys = append(q.Keys, k)
	}
	if c.OrderBy != nil {
		switch *c.OrderBy {
		case "rank":
		case "recent":
			q.Recent = true
		default:
			return q, mxerr.InvalidParam.With("order_by must be rank or recent")
		}
	}
	q.Limit = search.DefaultLimit
	if !isNull(c.Filter) {
		f, err := clientsync.ParseRoomEventFilter(c.Filter)
		if err != nil {
			return q, err
		}
		q.Rooms, q.NotRooms = f.Rooms, f.NotRooms
		q.Match = f.MatchEvent
		if f.Limit != nil {
			q.Limit = min(max(*f.Limit, 1), search.MaxLimit)
		}
	}
	if ec := c.EventContext; ec != nil {
		cq := &search.ContextQuery{Before: 5, After: 5, IncludeProfile: ec.IncludeProfile}
		for _, l := range []struct {
			v   *int
			dst *int
		}{{ec.BeforeLimit, &cq.Before}, {ec.AfterLimit, &cq.After}} {
			if l.v == nil {
				continue
			}
			if *l.v < 0 {
				return q, mxerr.InvalidParam.With("event_context limits must not be negative")
			}
			*l.dst = min(*l.v, search.MaxContext)
		}
		q.Context = cq
	}
	q.IncludeState = c.IncludeState
	if c.Groupings != nil {
		for _, g := range c.Groupings.GroupBy {
			if g.Key != search.GroupRoom && g.Key != search.GroupSender {
				return q, mxerr.InvalidParam.With("unknown group_by key %q: room_id or sender", g.Key)
			}
			if !slices.Contains(q.GroupBy, g.Key) {
				q.GroupBy = append(q.GroupBy, g.Key)
			}
		}
	}
	return q, nil
}

// renderSearch writes a page of results as the spec's Result Room Events.
// The results are formatted as one page (with bundled aggregations), and
// each context as its own.
func (a *API) renderSearch(r *http.Request, res *search.Result) map[string]any {
	ctx := r.Context()
	v := viewer(r)
	evs := make([]*room.Stored, len(res.Hits))
	for i, h := range res.Hits {
		evs[i] = h.Event
	}
	formatted := a.rooms.FormatAll(ctx, evs, v, true)
	results := make([]map[string]any, len(res.Hits))
	for i, h := range res.Hits {
		out := map[string]any{"rank": h.Rank, "result": formatted[i]}
		if c := h.Context; c != nil {
			cm := map[string]any{
				"start":         clientsync.Token{Pos: c.Start}.String(),
				"end":           clientsync.Token{Pos: c.End}.String(),
				"events_before": a.rooms.FormatAll(ctx, c.Before, v, true),
				"events_after":  a.rooms.FormatAll(ctx, c.After, v, true),
			}
			if c.Profiles != nil {
				cm["profile_info"] = c.Profiles
			}
			out["context"] = cm
		}
		results[i] = out
	}
	out := map[string]any{"count": res.Count, "highlights": res.Highlights, "results": results}
	if res.State != nil {
		state := map[string]any{}
		for roomID, evs := range res.State {
			state[roomID.String()] = a.rooms.FormatAll(ctx, evs, v, true)
		}
		out["state"] = state
	}
	if res.Groups != nil {
		out["groups"] = res.Groups
	}
	if res.NextBatch != "" {
		out["next_batch"] = res.NextBatch
	}
	return out
}
