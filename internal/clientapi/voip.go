package clientapi

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/myelin-chat/myelin/internal/httpx"
)

type turnServerResp struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	URIs     []string `json:"uris"`
	// TTL is in seconds.
	TTL int64 `json:"ttl"`
}

// getTurnServer serves GET /_matrix/client/v3/voip/turnServer (voip.yaml)
// from the turn_* settings. With a shared secret the credentials are the
// time-limited ones coturn's use-auth-secret checks: username
// "<expiry unix seconds>:<user ID>", password
// base64(HMAC-SHA1(secret, username)). Unconfigured, the answer is {},
// as Synapse's, which clients read as "no TURN server".
func (a *API) getTurnServer(w http.ResponseWriter, r *http.Request) error {
	t := a.cfg.TURN
	if !t.Configured() {
		return httpx.OK(w, httpx.Empty)
	}
	lifetime := time.Duration(t.UserLifetime)
	if t.SharedSecret == "" {
		return httpx.OK(w, turnServerResp{Username: t.Username, Password: t.Password, URIs: t.URIs, TTL: int64(lifetime / time.Second)})
	}
	expiry := time.Now().Add(lifetime).Unix()
	user := strconv.FormatInt(expiry, 10) + ":" + session(r).UserID.String()
	mac := hmac.New(sha1.New, []byte(t.SharedSecret))
	mac.Write([]byte(user))
	return httpx.OK(w, turnServerResp{
		Username: user,
		Password: base64.StdEncoding.EncodeToString(mac.Sum(nil)),
		URIs:     t.URIs,
		TTL:      int64(lifetime / time.Second),
	})
}
