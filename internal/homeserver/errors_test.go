package homeserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

type errBody struct {
	Errcode      string `json:"errcode"`
	Error        string `json:"error"`
	RetryAfterMS *int64 `json:"retry_after_ms"`
}

func do(t *testing.T, method, url, token string, body []byte) (int, errBody) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var eb errBody
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &eb); err != nil {
			t.Fatalf("%s %s: error body is not JSON: %q", method, url, raw)
		}
	}
	return resp.StatusCode, eb
}

func TestErrorsAreMatrixJSON(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine, func(c *config.Config) { c.MaxRequestBytes = 4096 })
		alice := srv.Client("alice")
		bob := srv.Client("bob")
		ctx := context.Background()
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
		if err != nil {
			t.Fatal(err)
		}
		base := srv.URL + "/_matrix/client/v3"
		sendURL := base + "/rooms/" + room.RoomID.String() + "/send/m.room.message/"
		cases := []struct {
			name, method, url, token string
			body                     []byte
			status                   int
			errcode                  string
		}{
			{"unknown endpoint", "GET", base + "/no/such/thing", alice.AccessToken, nil, 404, "M_UNRECOGNIZED"},
			{"wrong method", "DELETE", base + "/createRoom", alice.AccessToken, nil, 405, "M_UNRECOGNIZED"},
			{"missing token", "GET", base + "/joined_rooms", "", nil, 401, "M_MISSING_TOKEN"},
			{"unknown token", "GET", base + "/joined_rooms", "nope", nil, 401, "M_UNKNOWN_TOKEN"},
			{"malformed JSON", "PUT", sendURL + "t1", alice.AccessToken, []byte(`{"body":`), 400, "M_NOT_JSON"},
			{"wrong type", "POST", base + "/createRoom", alice.AccessToken, []byte(`{"name": 5}`), 400, "M_BAD_JSON"},
			{"not an object", "PUT", sendURL + "t2", alice.AccessToken, []byte(`[1,2]`), 400, "M_BAD_JSON"},
			{"too large", "PUT", sendURL + "t3", alice.AccessToken, []byte(`{"body":"` + strings.Repeat("x", 5000) + `"}`), 413, "M_TOO_LARGE"},
			{"not a member", "PUT", sendURL + "t4", bob.AccessToken, []byte(`{"msgtype":"m.text","body":"hi"}`), 403, "M_FORBIDDEN"},
			{"unknown room", "PUT", base + "/rooms/!nope:localhost/send/m.room.message/t5", alice.AccessToken, []byte(`{}`), 404, "M_NOT_FOUND"},
			{"read without membership", "GET", base + "/rooms/" + room.RoomID.String() + "/messages?dir=b", bob.AccessToken, nil, 403, "M_FORBIDDEN"},
			{"bad dir", "GET", base + "/rooms/" + room.RoomID.String() + "/messages?dir=x", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
			{"bad since token", "GET", base + "/sync?since=garbage", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
			{"unsupported room version", "POST", base + "/createRoom", alice.AccessToken, []byte(`{"room_version":"99"}`), 400, "M_UNSUPPORTED_ROOM_VERSION"},
			{"power too low", "PUT", base + "/rooms/" + room.RoomID.String() + "/state/m.room.name/", bob.AccessToken, []byte(`{"name":"x"}`), 403, "M_FORBIDDEN"},
		}
		for _, c := range cases {
			status, eb := do(t, c.method, c.url, c.token, c.body)
			if status != c.status || eb.Errcode != c.errcode {
				t.Errorf("%s: got %d %s (%s), want %d %s", c.name, status, eb.Errcode, eb.Error, c.status, c.errcode)
			}
		}
	})
}

func TestRateLimitGives429WithRetryAfter(t *testing.T) {
	srv := mxtest.Start(t, "sqlite")
	alice := srv.Client("alice")
	srv.Config.RateLimit = config.RateLimit{Enabled: true, PerSecond: 1, Burst: 3}
	srv.Restart()
	var last int
	var eb errBody
	for range 10 {
		last, eb = do(t, "GET", srv.URL+"/_matrix/client/v3/account/whoami", alice.AccessToken, nil)
		if last == 429 {
			break
		}
	}
	if last != 429 || eb.Errcode != "M_LIMIT_EXCEEDED" || eb.RetryAfterMS == nil || *eb.RetryAfterMS <= 0 {
		t.Fatalf("after a burst: got %d %s retry_after_ms=%v, want 429 M_LIMIT_EXCEEDED with retry_after_ms", last, eb.Errcode, eb.RetryAfterMS)
	}
}
