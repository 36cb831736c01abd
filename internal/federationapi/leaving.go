package federationapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// makeLeave handles GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
// (leaving-v1.yaml).
func (a *API) makeLeave(w http.ResponseWriter, r *http.Request) error {
	return a.makeMembership(w, r, "leave", false)
}

// sendLeaveV2 handles PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
// (leaving-v2.yaml).
func (a *API) sendLeaveV2(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.receiveMembership(r, "leave"); err != nil {
		return err
	}
	return httpx.OK(w, struct{}{})
}

// sendLeaveV1 handles PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}
// (leaving-v1.yaml of older specs, still used by older servers): the
// answer is [200, {}].
func (a *API) sendLeaveV1(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.receiveMembership(r, "leave"); err != nil {
		return err
	}
	return httpx.OK(w, []any{200, struct{}{}})
}
