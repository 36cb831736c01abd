package clientapi

import (
	"net/http"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// mutualRoomsPage is how many room IDs one /mutual_rooms answer holds.
const mutualRoomsPage = 100

type mutualRoomsResp struct {
	Joined    []id.RoomID `json:"joined"`
	Count     int         `json:"count"`
	NextBatch string      `json:"next_batch,omitempty"`
}

// getMutualRooms serves GET /_matrix/client/v1/mutual_rooms
// (mutual_rooms.yaml), and Synapse's unstable
// /_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms: the
// rooms both the requester and user_id are joined to, in room ID order.
// The next_batch token is the last room ID of the page, so a page
// continues correctly when rooms are joined or left in between.
func (a *API) getMutualRooms(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	users := q["user_id"]
	switch {
	case len(users) == 0 || users[0] == "":
		return mxerr.MissingParam.With("user_id is required")
	case len(users) > 1:
		return mxerr.InvalidParam.With("user_id is given more than once")
	}
	other := id.UserID(users[0])
	if _, _, err := other.ParseAndValidateRelaxed(); err != nil {
		return mxerr.InvalidParam.With("the user ID provided was invalid")
	}
	sess := session(r)
	if other == sess.UserID {
		return mxerr.InvalidParam.With("you cannot request a list of shared rooms with yourself")
	}
	from := q.Get("from")
	if from != "" && !strings.HasPrefix(from, "!") {
		return mxerr.InvalidParam.With("invalid from token")
	}
	ms, err := a.rooms.LocalMemberships(r.Context(), sess.UserID, 0)
	if err != nil {
		return err
	}
	var mine []id.RoomID
	for _, m := range ms {
		if m.Membership == "join" {
			mine = append(mine, m.RoomID)
		}
	}
	slices.Sort(mine)
	resp := mutualRoomsResp{Joined: []id.RoomID{}}
	for _, roomID := range mine {
		mem, err := a.rooms.Membership(r.Context(), roomID, other)
		if err != nil {
			return err
		}
		if mem != "join" {
			continue
		}
		resp.Count++
		if string(roomID) <= from {
			continue
		}
		if len(resp.Joined) == mutualRoomsPage {
			resp.NextBatch = string(resp.Joined[len(resp.Joined)-1])
			continue
		}
		resp.Joined = append(resp.Joined, roomID)
	}
	return httpx.OK(w, resp)
}
