package clientapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// serverManagedAccountData are the account data types the server maintains
// itself; clients may read them but never set them directly (spec: Client
// Config, "Server Behaviour"). m.fully_read goes through /read_markers.
var serverManagedAccountData = map[string]bool{"m.fully_read": true, "m.push_rules": true}

// getAccountData serves GET /_matrix/client/v3/user/{userId}/account_data/{type}
// (account-data.yaml).
func (a *API) getAccountData(w http.ResponseWriter, r *http.Request) error {
	return a.getAccountDataIn(w, r, "")
}

// setAccountData serves PUT /_matrix/client/v3/user/{userId}/account_data/{type}
// (account-data.yaml).
func (a *API) setAccountData(w http.ResponseWriter, r *http.Request) error {
	return a.setAccountDataIn(w, r, "")
}

// getAccountDataPerRoom serves GET
// /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
// (account-data.yaml).
func (a *API) getAccountDataPerRoom(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	return a.getAccountDataIn(w, r, roomID)
}

// setAccountDataPerRoom serves PUT
// /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
// (account-data.yaml).
func (a *API) setAccountDataPerRoom(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	return a.setAccountDataIn(w, r, roomID)
}

// getAccountDataIn answers with the content of the caller's account data
// of the path's type, global when roomID is "".
func (a *API) getAccountDataIn(w http.ResponseWriter, r *http.Request, roomID id.RoomID) error {
	if err := ownUser(r); err != nil {
		return err
	}
	content, err := a.accountData.Get(r.Context(), session(r).UserID, roomID, r.PathValue("type"))
	if err != nil {
		return err
	}
	return httpx.OK(w, content)
}

// setAccountDataIn stores the body, which must be a JSON object, as the
// caller's account data of the path's type, global when roomID is "".
func (a *API) setAccountDataIn(w http.ResponseWriter, r *http.Request, roomID id.RoomID) error {
	if err := ownUser(r); err != nil {
		return err
	}
	evType := r.PathValue("type")
	if serverManagedAccountData[evType] {
		return mxerr.BadJSON.WithStatus(http.StatusMethodNotAllowed).With("cannot set %s through this API", evType)
	}
	var content map[string]json.RawMessage
	if err := httpx.DecodeJSON(r, &content); err != nil {
		return err
	}
	if content == nil { // the body was null
		return mxerr.BadJSON.With("content must be a JSON object")
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return err
	}
	if _, err := a.accountData.Put(r.Context(), session(r).UserID, roomID, evType, raw); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}
