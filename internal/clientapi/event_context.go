package clientapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/room"
)

// getEventContext serves GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}
// (event_context.yaml): the events around one, the state at the last
// event returned, and tokens /messages goes on from.
//
// As in Synapse, the limit is split into limit/2 events before and the
// rest after; the filter applies to events_before, events_after and
// state, never to the event itself. The state is the state after the
// last event returned (after the event itself when none follows), only
// its members who sent the events returned under lazy_load_members.
// History visibility applies to all of it, state included (as in
// Synapse): hidden events are left out, and the event itself, if hidden,
// is not found, as /event answers (Synapse says 403 there; 404 does not
// tell that the event exists).
func (a *API) getEventContext(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	sess := session(r)
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := pageLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	ef, err := roomEventFilter(q.Get("filter"))
	if err != nil {
		return err
	}
	acc, err := a.roomAccess(ctx, sess.UserID, roomID)
	if err != nil {
		return err
	}
	ev, err := a.rooms.Event(ctx, id.EventID(r.PathValue("eventId")))
	if err != nil {
		return err
	}
	// Outliers have no place in the timeline to stand in the middle of.
	if ev.RoomID() != roomID || ev.Rejected || ev.SoftFailed || ev.Outlier {
		return mxerr.NotFound.With("event not found")
	}
	if ok, err := a.rooms.CanSee(ctx, sess.UserID, []*room.Stored{ev}); err != nil {
		return err
	} else if !ok[0] {
		return mxerr.NotFound.With("event not found")
	}

	ignored, err := a.accountData.Ignored(ctx, sess.UserID)
	if err != nil {
		return err
	}
	if clientsync.Hides(ignored, ev) {
		// As an event the user may not see: Synapse filters the event of
		// /context like any other.
		return mxerr.NotFound.With("event not found")
	}
	beforeLimit := limit / 2
	base := pageQuery{roomID: roomID, user: sess.UserID, acc: acc, filter: &ef, ignored: ignored}
	bq := base
	bq.backwards, bq.from, bq.limit = true, ev.StreamPos-1, beforeLimit
	before, start, _, err := a.timelinePage(ctx, bq)
	if err != nil {
		return err
	}
	fq := base
	fq.from, fq.limit = ev.StreamPos, limit-beforeLimit
	after, end, _, err := a.timelinePage(ctx, fq)
	if err != nil {
		return err
	}

	last := ev
	if len(after) > 0 {
		last = after[len(after)-1]
	}
	st, err := a.rooms.StateAt(ctx, last, true)
	if err != nil {
		return err
	}
	var stateEvs []*room.Stored
	if ef.LazyLoadMembers {
		senders := make([]*room.Stored, 0, len(before)+1+len(after))
		senders = append(append(append(senders, before...), ev), after...)
		stateEvs = a.senderMembers(ctx, st, senders)
	} else if stateEvs, err = a.rooms.StateEvents(ctx, st); err != nil {
		return err
	}
	stateEvs = ef.FilterEvents(stateEvs)
	if stateEvs, err = a.rooms.Visible(ctx, sess.UserID, stateEvs); err != nil {
		return err
	}

	v := viewer(r)
	return httpx.OK(w, map[string]any{
		"start":         clientsync.Token{Pos: start}.String(),
		"end":           clientsync.Token{Pos: end}.String(),
		"event":         a.rooms.Format(ctx, ev, v, true),
		"events_before": a.rooms.FormatAll(ctx, before, v, true),
		"events_after":  a.rooms.FormatAll(ctx, after, v, true),
		"state":         a.rooms.FormatAll(ctx, stateEvs, v, true),
	})
}
