package clientapi

import (
	"errors"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/relations"
	"github.com/myelin-chat/myelin/internal/room"
)

// WithRelations serves /relations and /threads from the relations index.
func WithRelations(s *relations.Store) Option { return func(a *API) { a.relations = s } }

// getRelatingEvents serves GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}
// (relations.yaml), and with {relType} and {eventType} the
// getRelatingEventsWithRelType and getRelatingEventsWithRelTypeAndEventType
// operations. Tokens are /messages tokens, so the two interoperate.
func (a *API) getRelatingEvents(w http.ResponseWriter, r *http.Request) error {
	if a.relations == nil {
		return mxerr.Unrecognized.With("relations are not enabled")
	}
	sess := session(r)
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	parentID := id.EventID(r.PathValue("eventId"))
	f := relations.Filter{RelType: r.PathValue("relType"), EventType: r.PathValue("eventType")}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir == "" {
		dir = "b"
	}
	if dir != "b" && dir != "f" {
		return mxerr.InvalidParam.With("dir must be b or f")
	}
	pg := relations.Page{Backwards: dir == "b", Limit: 5}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return mxerr.InvalidParam.With("limit must be a non-negative integer")
		}
		pg.Limit = min(n, 1000)
	}
	if v := q.Get("from"); v != "" {
		if pg.From, err = parseStreamToken(v); err != nil {
			return err
		}
	}
	if v := q.Get("to"); v != "" {
		if pg.To, err = parseStreamToken(v); err != nil {
			return err
		}
	}
	switch q.Get("recurse") {
	case "", "false":
	case "true":
		f.Recurse = true
	default:
		return mxerr.InvalidParam.With("recurse must be true or false")
	}
	acc, err := a.roomAccess(ctx, sess.UserID, roomID)
	if err != nil {
		return err
	}
	if !acc.joined && pg.Backwards && (pg.From == 0 || pg.From > acc.until) {
		pg.From = acc.until
	}
	if !acc.joined && !pg.Backwards && (pg.To == 0 || pg.To > acc.until) {
		pg.To = acc.until
	}
	// The parent must be one the user may see, in this room.
	notFound := mxerr.NotFound.With("event not found")
	parent, err := a.rooms.Event(ctx, parentID)
	if errors.Is(err, mxerr.NotFound) || (err == nil && parent.RoomID() != roomID) {
		return notFound
	}
	if err != nil {
		return err
	}
	if ok, err := a.rooms.CanSee(ctx, sess.UserID, []*room.Stored{parent}); err != nil {
		return err
	} else if !ok[0] {
		return notFound
	}
	children, more, err := a.relations.Children(ctx, roomID, parentID, f, pg)
	if err != nil {
		return err
	}
	evs, err := a.loadInOrder(r, children)
	if err != nil {
		return err
	}
	chunk := a.rooms.FormatAll(ctx, evs, viewer(r), true)
	if chunk == nil {
		chunk = []room.ClientEvent{}
	}
	resp := map[string]any{"chunk": chunk}
	if more && len(children) > 0 {
		last := children[len(children)-1].StreamPos
		if pg.Backwards {
			last--
		}
		resp["next_batch"] = clientsync.Token{Pos: last}.String()
	}
	if v := q.Get("from"); v != "" {
		resp["prev_batch"] = v
	}
	if f.Recurse {
		resp["recursion_depth"] = relations.MaxDepth
	}
	return httpx.OK(w, resp)
}

// loadInOrder loads the indexed events the user may see, in index order.
func (a *API) loadInOrder(r *http.Request, children []relations.Child) ([]*room.Stored, error) {
	ids := make([]id.EventID, len(children))
	for i, c := range children {
		ids[i] = c.ID
	}
	loaded, err := a.rooms.Events(r.Context(), ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[id.EventID]*room.Stored, len(loaded))
	for _, ev := range loaded {
		byID[ev.ID] = ev
	}
	ordered := make([]*room.Stored, 0, len(loaded))
	for _, evID := range ids {
		if ev := byID[evID]; ev != nil {
			ordered = append(ordered, ev)
		}
	}
	return a.rooms.Visible(r.Context(), session(r).UserID, ordered)
}
