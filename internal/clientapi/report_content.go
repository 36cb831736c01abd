package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/ratelimit"
	"github.com/myelin-chat/myelin/internal/reports"
	"github.com/myelin-chat/myelin/internal/room"
)

// maxReportReason is the longest reason a report may give, in characters
// (Synapse's limit for user reports, applied to every kind here so no
// report fills the table with megabytes).
const maxReportReason = 1000

// WithReports stores the reports of events, rooms and users in store,
// each user limited to perSecond reports a second with bursts of burst
// (no limit when perSecond or burst is not positive). Without it the
// reporting endpoints answer 404 M_UNRECOGNIZED.
func WithReports(store *reports.Store, perSecond float64, burst int) Option {
	return func(a *API) {
		a.reports = store
		if perSecond > 0 && burst > 0 {
			a.reportLimiter = ratelimit.New(perSecond, burst)
		}
	}
}

// reportReq is the body of the three reporting endpoints. Fields are raw
// so that a reason or score of the wrong type is M_BAD_JSON, not ignored.
type reportReq struct {
	Reason json.RawMessage `json:"reason"`
	Score  json.RawMessage `json:"score"`
}

// startReport checks that reporting is on, applies the per-user report
// rate limit and decodes the body: reason must be a string (and present
// when required), score an integer if given.
func (a *API) startReport(r *http.Request, reasonRequired bool) (reason string, score *int64, err error) {
	if a.reports == nil {
		return "", nil, mxerr.Unrecognized.With("reporting is not enabled")
	}
	if a.reportLimiter != nil {
		if ok, retry := a.reportLimiter.Allow(session(r).UserID.String()); !ok {
			return "", nil, mxerr.LimitExceeded.With("too many reports").WithField("retry_after_ms", retry.Milliseconds())
		}
	}
	var req reportReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return "", nil, err
	}
	switch {
	case req.Reason == nil || string(req.Reason) == "null":
		if reasonRequired {
			return "", nil, mxerr.BadJSON.With("reason is required")
		}
	case json.Unmarshal(req.Reason, &reason) != nil:
		return "", nil, mxerr.BadJSON.With("reason must be a string")
	case strings.ContainsRune(reason, 0):
		// The reason is stored as text, which cannot hold a NUL.
		return "", nil, mxerr.BadJSON.With("reason must not contain NUL characters")
	}
	if utf8.RuneCountInString(reason) > maxReportReason {
		return "", nil, mxerr.BadJSON.With("reason must be at most %d characters", maxReportReason)
	}
	if req.Score != nil && string(req.Score) != "null" {
		var n int64
		if err := json.Unmarshal(req.Score, &n); err != nil {
			return "", nil, mxerr.BadJSON.With("score must be an integer")
		}
		score = &n
	}
	return reason, score, nil
}

// reportEvent serves POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}
// (report_content.yaml). The reporter must be joined to the room and able
// to see the event; an unknown event, an event of another room, a
// redacted one, one they cannot see and a room they are not joined to
// all get the same 404, so a report reveals nothing a read would not.
func (a *API) reportEvent(w http.ResponseWriter, r *http.Request) error {
	reason, score, err := a.startReport(r, false)
	if err != nil {
		return err
	}
	ctx := r.Context()
	reporter := session(r).UserID
	notFound := mxerr.NotFound.With("the event was not found or you are not joined to the room")
	roomID, err := pathRoomID(r)
	if err != nil {
		return notFound
	}
	if m, err := a.rooms.Membership(ctx, roomID, reporter); err != nil || m != "join" {
		return notFound //nolint:nilerr // no membership reads as not joined, as the spec asks
	}
	ev, err := a.rooms.Event(ctx, id.EventID(r.PathValue("eventId")))
	if err != nil {
		if errors.Is(err, mxerr.NotFound) {
			return notFound
		}
		return err
	}
	if ev.RoomID() != roomID || ev.Rejected || ev.SoftFailed || ev.Outlier || ev.RedactedBy != "" {
		return notFound
	}
	if ok, err := a.rooms.CanSee(ctx, reporter, []*room.Stored{ev}); err != nil {
		return err
	} else if !ok[0] {
		return notFound
	}
	if _, err := a.reports.Add(ctx, reports.Report{
		Kind: reports.Event, Reporter: reporter, RoomID: roomID, EventID: ev.ID, Target: ev.Sender,
		Reason: reason, Score: score,
	}); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// reportRoom serves POST /_matrix/client/v3/rooms/{roomId}/report
// (report_content.yaml, v1.13). The reporter need not be in the room; a
// room unknown here is 404, as in Synapse.
func (a *API) reportRoom(w http.ResponseWriter, r *http.Request) error {
	reason, _, err := a.startReport(r, true)
	if err != nil {
		return err
	}
	ctx := r.Context()
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	if ok, err := a.rooms.Exists(ctx, roomID); err != nil {
		return err
	} else if !ok {
		return mxerr.NotFound.With("the room was not found")
	}
	if _, err := a.reports.Add(ctx, reports.Report{Kind: reports.Room, Reporter: session(r).UserID, RoomID: roomID, Reason: reason}); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// reportUser serves POST /_matrix/client/v3/users/{userId}/report
// (report_content.yaml, v1.14). As Synapse does, a report of a user of
// another server or of no user at all answers 200 and is not stored:
// the answer does not tell whether the user exists.
func (a *API) reportUser(w http.ResponseWriter, r *http.Request) error {
	reason, _, err := a.startReport(r, true)
	if err != nil {
		return err
	}
	ctx := r.Context()
	target := id.UserID(r.PathValue("userId"))
	if _, _, err := target.Parse(); err != nil {
		return mxerr.InvalidParam.With("invalid user ID %q", target)
	}
	if !a.users.IsLocal(target) {
		return httpx.OK(w, httpx.Empty)
	}
	if _, err := a.users.Get(ctx, target); err != nil {
		if errors.Is(err, mxerr.NotFound) {
			return httpx.OK(w, httpx.Empty)
		}
		return err
	}
	if _, err := a.reports.Add(ctx, reports.Report{Kind: reports.User, Reporter: session(r).UserID, Target: target, Reason: reason}); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}
