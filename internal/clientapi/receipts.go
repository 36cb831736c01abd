package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/receipts"
)

// fullyRead is the room account data type of the fully read marker
// (read_markers module), set through /read_markers or a receipt of that type.
const fullyRead = "m.fully_read"

// postReceipt serves POST
// /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}
// (receipts.yaml). m.fully_read moves the read marker instead, as
// /read_markers does.
func (a *API) postReceipt(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	receiptType := r.PathValue("receiptType")
	switch receiptType {
	case receipts.Read, receipts.ReadPrivate, fullyRead:
	default:
		return mxerr.InvalidParam.With("receipt type must be %s, %s or %s", receipts.Read, receipts.ReadPrivate, fullyRead)
	}
	var body struct {
		ThreadID *json.RawMessage `json:"thread_id"`
	}
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	var threadID string
	if body.ThreadID != nil {
		if receiptType == fullyRead {
			return mxerr.InvalidParam.With("thread_id is not allowed for %s", fullyRead)
		}
		if err := json.Unmarshal(*body.ThreadID, &threadID); err != nil || threadID == "" {
			return mxerr.InvalidParam.With("thread_id field must be a non-empty string")
		}
		if threadID != "main" && !strings.HasPrefix(threadID, "$") {
			return mxerr.InvalidParam.With("thread_id must be main or an event ID")
		}
	}
	user := session(r).UserID
	if err := a.requireJoined(r.Context(), roomID, user); err != nil {
		return err
	}
	eventID := id.EventID(r.PathValue("eventId"))
	if err := a.checkReceiptEvent(r.Context(), roomID, eventID); err != nil {
		return err
	}
	if err := a.markRead(r.Context(), roomID, user, receiptType, threadID, eventID); err != nil {
		return err
	}
	a.active(session(r).UserID)
	return httpx.OK(w, httpx.Empty)
}

// markRead applies one receipt or fully read marker of user, for an event
// checkReceiptEvent accepted: the shared step of /receipt and /read_markers.
func (a *API) markRead(ctx context.Context, roomID id.RoomID, user id.UserID, receiptType, threadID string, eventID id.EventID) error {
	if receiptType == fullyRead {
		content, _ := json.Marshal(map[string]id.EventID{"event_id": eventID})
		_, err := a.accountData.Put(ctx, user, roomID, fullyRead, content)
		return err
	}
	if _, err := a.receipts.Put(ctx, roomID, receiptType, user, threadID, eventID); err != nil {
		return err
	}
	if receiptType == "m.read" {
		// Private receipts stay on this server.
		data := map[string]any{"ts": time.Now().UnixMilli()}
		if threadID != "" {
			data["thread_id"] = threadID
		}
		a.shareEDU(ctx, roomID, "m.receipt", map[id.RoomID]any{roomID: map[string]any{"m.read": map[id.UserID]any{
			user: map[string]any{"event_ids": []id.EventID{eventID}, "data": data}}}})
	}
	return nil
}

// checkReceiptEvent rejects event IDs that are malformed or that name an
// event of another room. An event we do not have is accepted, as Synapse
// does: over federation a receipt may arrive before its event.
func (a *API) checkReceiptEvent(ctx context.Context, roomID id.RoomID, eventID id.EventID) error {
	if !strings.HasPrefix(eventID.String(), "$") {
		return mxerr.InvalidParam.With("invalid event ID %q", eventID)
	}
	ev, err := a.rooms.Event(ctx, eventID)
	if errors.Is(err, mxerr.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if ev.RoomID() != roomID {
		return mxerr.InvalidParam.With("event %s is not in room %s", eventID, roomID)
	}
	return nil
}

// requireJoined answers 403 unless user is joined to the room: typing and
// receipts are for members only.
func (a *API) requireJoined(ctx context.Context, roomID id.RoomID, user id.UserID) error {
	m, err := a.rooms.Membership(ctx, roomID, user)
	if err != nil {
		return err
	}
	if m != "join" {
		return mxerr.Forbidden.With("you are not joined to room %s", roomID)
	}
	return nil
}
