package clientapi

import (
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

func ownUser(r *http.Request) error {
	if id.UserID(r.PathValue("userId")) != session(r).UserID {
		return mxerr.Forbidden.With("you may only act for your own user")
	}
	return nil
}

// defineFilter serves POST /_matrix/client/v3/user/{userId}/filter (filter.yaml).
func (a *API) defineFilter(w http.ResponseWriter, r *http.Request) error {
	if err := ownUser(r); err != nil {
		return err
	}
	raw, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	fid, err := a.syncer.SaveFilter(r.Context(), session(r).UserID, raw)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]string{"filter_id": fid})
}

// getFilter serves GET /_matrix/client/v3/user/{userId}/filter/{filterId} (filter.yaml).
func (a *API) getFilter(w http.ResponseWriter, r *http.Request) error {
	if err := ownUser(r); err != nil {
		return err
	}
	raw, err := a.syncer.LoadFilter(r.Context(), session(r).UserID, r.PathValue("filterId"))
	if err != nil {
		return err
	}
	return httpx.JSON(w, http.StatusOK, rawJSON(raw))
}
