package relations

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/room"
)

// Relation types bundled besides threads.
const (
	Replace   = "m.replace"
	Reference = "m.reference"
)

var _ room.Decorator = (*Store)(nil)

// Decorate adds the bundled aggregations (spec: client-server API,
// "Aggregations of child events") to unsigned.m.relations of a page of
// events: m.thread, m.replace and m.reference. One index read serves the
// whole page. A failed read leaves the aggregations out: a page
// is still correct without them (the caller has no error to return).
func (s *Store) Decorate(ctx context.Context, rooms *room.Service, v room.Viewer, evs []*room.Stored, out []room.ClientEvent) {
	mark, err := s.markAt(ctx)
	if err != nil {
		// Without a mark every event is looked up.
		mark = 1<<63 - 1
	}
	var parents []id.EventID
	byID := make(map[id.EventID]*room.Stored, len(evs))
	for _, ev := range evs {
		// State events and redacted events bundle nothing (Synapse); a
		// redacted event has lost its relations' meaning. Events above
		// the mark have no children.
		if ev.IsState() || ev.RedactedBy != "" || ev.Rejected || ev.StreamPos > mark {
			continue
		}
		parents = append(parents, ev.ID)
		byID[ev.ID] = ev
	}
	if len(parents) == 0 {
		return
	}
	// Batches bound the query's parameters (a /sync of many rooms decorates
	// all its timelines at once).
	threads := map[id.EventID]ThreadSummary{}
	var edges []Edge
	for batch := range slices.Chunk(parents, 500) {
		th, ed, err := s.Aggregations(ctx, v.User, batch)
		if err != nil {
			return
		}
		maps.Copy(threads, th)
		edges = append(edges, ed...)
	}
	// Candidate edits per parent, newest first by (origin_server_ts,
	// event_id) as Synapse orders them.
	edits := map[id.EventID][]Edge{}
	refs := map[id.EventID][]map[string]id.EventID{}
	var load []id.EventID
	for _, e := range edges {
		p := byID[e.Parent]
		if p == nil || e.Room != p.RoomID() {
			continue
		}
		switch e.RelType {
		case Reference:
			refs[e.Parent] = append(refs[e.Parent], map[string]id.EventID{"event_id": e.Child})
		case Replace:
			// A replacement has the original's sender and type, and an
			// edit is not itself edited.
			if e.Sender != p.Sender || e.ChildType != p.Type || gjson.GetBytes(p.Content, `m\.relates_to.rel_type`).Str == Replace {
				continue
			}
			edits[e.Parent] = append(edits[e.Parent], e)
			load = append(load, e.Child)
		}
	}
	for p, t := range threads {
		if byID[p] != nil && t.Room == byID[p].RoomID() {
			load = append(load, t.Latest)
		}
	}
	loaded := map[id.EventID]*room.Stored{}
	if len(load) > 0 {
		got, err := rooms.Events(ctx, load)
		if err != nil {
			return
		}
		visible, err := rooms.Visible(ctx, v.User, got)
		if err != nil {
			return
		}
		for _, ev := range visible {
			loaded[ev.ID] = ev
		}
	}
	withRoomID := len(out) > 0 && out[0].RoomID != ""
	for i, ev := range evs {
		if byID[ev.ID] == nil {
			continue
		}
		agg := map[string]any{}
		if t, ok := threads[ev.ID]; ok && t.Room == ev.RoomID() {
			if latest := loaded[t.Latest]; latest != nil {
				agg[Thread] = map[string]any{
					"latest_event":              rooms.FormatBare(ctx, []*room.Stored{latest}, v, withRoomID)[0],
					"count":                     t.Count,
					"current_user_participated": t.Participated || ev.Sender == v.User,
				}
			}
		}
		if cands := edits[ev.ID]; len(cands) > 0 {
			slices.SortFunc(cands, func(a, b Edge) int {
				if a.OriginServerTS != b.OriginServerTS {
					return cmp.Compare(b.OriginServerTS, a.OriginServerTS)
				}
				return strings.Compare(string(b.Child), string(a.Child))
			})
			for _, c := range cands {
				edit := loaded[c.Child]
				if edit == nil || !gjson.GetBytes(edit.Content, `m\.new_content`).IsObject() {
					continue
				}
				// The whole replacement event (spec v1.7 and later).
				agg[Replace] = rooms.FormatBare(ctx, []*room.Stored{edit}, v, withRoomID)[0]
				break
			}
		}
		if r := refs[ev.ID]; len(r) > 0 {
			agg[Reference] = map[string]any{"chunk": r}
		}
		if len(agg) == 0 {
			continue
		}
		if out[i].Unsigned == nil {
			out[i].Unsigned = &room.Unsigned{}
		}
		out[i].Unsigned.Relations = agg
	}
}
