package clientapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

type roomKeysVersionReq struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   string          `json:"version"`
}

func (req *roomKeysVersionReq) check() error {
	if req.Algorithm == "" {
		return mxerr.MissingParam.With("algorithm is required")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(req.AuthData, &obj) != nil || obj == nil {
		return mxerr.BadJSON.With("auth_data must be an object")
	}
	return nil
}

// postRoomKeysVersion serves POST /_matrix/client/v3/room_keys/version
// (key_backup.yaml).
func (a *API) postRoomKeysVersion(w http.ResponseWriter, r *http.Request) error {
	var req roomKeysVersionReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	v, err := a.e2ee.CreateBackup(r.Context(), session(r).UserID, req.Algorithm, req.AuthData)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]string{"version": v})
}

// getRoomKeysVersionCurrent serves GET /_matrix/client/v3/room_keys/version
// (key_backup.yaml).
func (a *API) getRoomKeysVersionCurrent(w http.ResponseWriter, r *http.Request) error {
	b, err := a.e2ee.Backup(r.Context(), session(r).UserID, "")
	if err != nil {
		return err
	}
	return httpx.OK(w, b)
}

// getRoomKeysVersion serves GET /_matrix/client/v3/room_keys/version/{version}
// (key_backup.yaml).
func (a *API) getRoomKeysVersion(w http.ResponseWriter, r *http.Request) error {
	b, err := a.e2ee.Backup(r.Context(), session(r).UserID, r.PathValue("version"))
	if err != nil {
		return err
	}
	return httpx.OK(w, b)
}

// putRoomKeysVersion serves PUT /_matrix/client/v3/room_keys/version/{version}
// (key_backup.yaml).
func (a *API) putRoomKeysVersion(w http.ResponseWriter, r *http.Request) error {
	var req roomKeysVersionReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	version := r.PathValue("version")
	if req.Version != "" && req.Version != version {
		return mxerr.InvalidParam.With("version in the body does not match the path")
	}
	if err := a.e2ee.UpdateBackup(r.Context(), session(r).UserID, version, req.Algorithm, req.AuthData); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// deleteRoomKeysVersion serves DELETE
// /_matrix/client/v3/room_keys/version/{version} (key_backup.yaml).
func (a *API) deleteRoomKeysVersion(w http.ResponseWriter, r *http.Request) error {
	if err := a.e2ee.DeleteBackup(r.Context(), session(r).UserID, r.PathValue("version")); err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

type roomKeysUpdateResp struct {
	ETag  string `json:"etag"`
	Count int    `json:"count"`
}

type roomKeyBackup struct {
	Sessions map[string]e2ee.BackupKey `json:"sessions"`
}

// backupVersionParam reads the required ?version= of the keys endpoints.
func backupVersionParam(r *http.Request) (string, error) {
	v := r.URL.Query().Get("version")
	if v == "" {
		return "", mxerr.MissingParam.With("version is required")
	}
	return v, nil
}

// checkBackupKey rejects a key without session data.
func checkBackupKey(k e2ee.BackupKey) error {
	var obj map[string]json.RawMessage
	if json.Unmarshal(k.SessionData, &obj) != nil || obj == nil {
		return mxerr.BadJSON.With("session_data must be an object")
	}
	return nil
}

// putKeys stores keys and answers with the new etag and count.
func (a *API) putKeys(w http.ResponseWriter, r *http.Request, keys e2ee.BackupKeys) error {
	version, err := backupVersionParam(r)
	if err != nil {
		return err
	}
	for _, sessions := range keys {
		for _, k := range sessions {
			if err := checkBackupKey(k); err != nil {
				return err
			}
		}
	}
	etag, count, err := a.e2ee.PutBackupKeys(r.Context(), session(r).UserID, version, keys)
	if err != nil {
		return err
	}
	return httpx.OK(w, roomKeysUpdateResp{ETag: etag, Count: count})
}

// putRoomKeys serves PUT /_matrix/client/v3/room_keys/keys (key_backup.yaml).
func (a *API) putRoomKeys(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Rooms map[id.RoomID]roomKeyBackup `json:"rooms"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	keys := e2ee.BackupKeys{}
	for roomID, rb := range req.Rooms {
		keys[roomID] = rb.Sessions
	}
	return a.putKeys(w, r, keys)
}

// putRoomKeysByRoomId serves PUT /_matrix/client/v3/room_keys/keys/{roomId}
// (key_backup.yaml).
func (a *API) putRoomKeysByRoomId(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var req roomKeyBackup
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	return a.putKeys(w, r, e2ee.BackupKeys{roomID: req.Sessions})
}

// putRoomKeyBySessionId serves PUT
// /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId} (key_backup.yaml).
func (a *API) putRoomKeyBySessionId(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	var k e2ee.BackupKey
	if err := httpx.DecodeJSON(r, &k); err != nil {
		return err
	}
	return a.putKeys(w, r, e2ee.BackupKeys{roomID: {r.PathValue("sessionId"): k}})
}

// getKeys loads the keys of the ?version= backup, of one room and session
// when they are not "".
func (a *API) getKeys(r *http.Request, roomID id.RoomID, sessionID string) (e2ee.BackupKeys, error) {
	version, err := backupVersionParam(r)
	if err != nil {
		return nil, err
	}
	return a.e2ee.GetBackupKeys(r.Context(), session(r).UserID, version, roomID, sessionID)
}

// getRoomKeys serves GET /_matrix/client/v3/room_keys/keys (key_backup.yaml).
func (a *API) getRoomKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := a.getKeys(r, "", "")
	if err != nil {
		return err
	}
	rooms := map[id.RoomID]roomKeyBackup{}
	for roomID, sessions := range keys {
		rooms[roomID] = roomKeyBackup{Sessions: sessions}
	}
	return httpx.OK(w, map[string]any{"rooms": rooms})
}

// getRoomKeysByRoomId serves GET /_matrix/client/v3/room_keys/keys/{roomId}
// (key_backup.yaml). A room without keys gives an empty sessions object.
func (a *API) getRoomKeysByRoomId(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	keys, err := a.getKeys(r, roomID, "")
	if err != nil {
		return err
	}
	sessions := keys[roomID]
	if sessions == nil {
		sessions = map[string]e2ee.BackupKey{}
	}
	return httpx.OK(w, roomKeyBackup{Sessions: sessions})
}

// getRoomKeyBySessionId serves GET
// /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId} (key_backup.yaml).
func (a *API) getRoomKeyBySessionId(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	sid := r.PathValue("sessionId")
	keys, err := a.getKeys(r, roomID, sid)
	if err != nil {
		return err
	}
	k, ok := keys[roomID][sid]
	if !ok {
		return mxerr.NotFound.With("no backed-up key for this session")
	}
	return httpx.OK(w, k)
}

// deleteKeys deletes backed-up keys and answers with the new etag and count.
func (a *API) deleteKeys(w http.ResponseWriter, r *http.Request, roomID id.RoomID, sessionID string) error {
	version, err := backupVersionParam(r)
	if err != nil {
		return err
	}
	etag, count, err := a.e2ee.DeleteBackupKeys(r.Context(), session(r).UserID, version, roomID, sessionID)
	if err != nil {
		return err
	}
	return httpx.OK(w, roomKeysUpdateResp{ETag: etag, Count: count})
}

// deleteRoomKeys serves DELETE /_matrix/client/v3/room_keys/keys
// (key_backup.yaml).
func (a *API) deleteRoomKeys(w http.ResponseWriter, r *http.Request) error {
	return a.deleteKeys(w, r, "", "")
}

// deleteRoomKeysByRoomId serves DELETE
// /_matrix/client/v3/room_keys/keys/{roomId} (key_backup.yaml).
func (a *API) deleteRoomKeysByRoomId(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	return a.deleteKeys(w, r, roomID, "")
}

// deleteRoomKeyBySessionId serves DELETE
// /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId} (key_backup.yaml).
func (a *API) deleteRoomKeyBySessionId(w http.ResponseWriter, r *http.Request) error {
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	return a.deleteKeys(w, r, roomID, r.PathValue("sessionId"))
}
