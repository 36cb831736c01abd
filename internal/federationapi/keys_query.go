package federationapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// maxQueryServers bounds one bulk key query: each server may cost an
// outbound fetch.
const maxQueryServers = 100

// perspectivesKeyQuery is GET /_matrix/key/v2/query/{serverName}
// (server-server API, "Querying Keys Through Another Server"): the keys of
// serverName, countersigned by us; empty when it cannot be reached and
// nothing is cached.
func (k *KeyServer) perspectivesKeyQuery(w http.ResponseWriter, r *http.Request) error {
	minValid := time.Now()
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return mxerr.InvalidParam.With("minimum_valid_until_ts must be an integer")
		}
		minValid = time.UnixMilli(ms)
	}
	out, err := k.Ring.Notarise(r.Context(), r.PathValue("serverName"), nil, minValid)
	if err != nil {
		return err
	}
	return httpx.OK(w, keys.QueryResp{ServerKeys: out})
}

// bulkPerspectivesKeyQuery is POST /_matrix/key/v2/query (server-server
// API, "Querying Keys Through Another Server"). Servers that cannot be
// reached and have nothing cached are left out.
func (k *KeyServer) bulkPerspectivesKeyQuery(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ServerKeys map[string]map[id.KeyID]keys.QueryCriteria `json:"server_keys"`
	}
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.ServerKeys == nil {
		return mxerr.BadJSON.With("server_keys is required")
	}
	if len(req.ServerKeys) > maxQueryServers {
		return mxerr.InvalidParam.With("at most %d servers per query", maxQueryServers)
	}
	now := time.Now()
	all := []json.RawMessage{}
	for server, criteria := range req.ServerKeys {
		minValid := now
		keyIDs := make([]id.KeyID, 0, len(criteria))
		for keyID, c := range criteria {
			keyIDs = append(keyIDs, keyID)
			if c.MinimumValidUntilTS > 0 && time.UnixMilli(c.MinimumValidUntilTS).After(minValid) {
				minValid = time.UnixMilli(c.MinimumValidUntilTS)
			}
		}
		out, err := k.Ring.Notarise(r.Context(), server, keyIDs, minValid)
		if err != nil {
			return err
		}
		all = append(all, out...)
	}
	return httpx.OK(w, keys.QueryResp{ServerKeys: all})
}
