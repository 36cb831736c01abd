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
			{"content integer out of range", "PUT", base + "/rooms/" + room.RoomID.String() + "/state/m.room.power_levels/", alice.AccessToken,
				[]byte(`{"users":{"` + alice.UserID.String() + `":9007199254740992}}`), 400, "M_BAD_JSON"},
			{"content float", "PUT", sendURL + "t6", alice.AccessToken, []byte(`{"body":"x","n":1.5}`), 400, "M_BAD_JSON"},
			{"content huge float", "PUT", sendURL + "t7", alice.AccessToken, []byte(`{"body":"x","n":1e400}`), 400, "M_BAD_JSON"},
			{"content negative zero", "PUT", sendURL + "t8", alice.AccessToken, []byte(`{"body":"x","n":-0}`), 400, "M_BAD_JSON"},
			{"content invalid UTF-8", "PUT", sendURL + "t9", alice.AccessToken, []byte("{\"body\":\"\xff\"}"), 400, "M_NOT_JSON"},
			{"content lone surrogate", "PUT", sendURL + "t10", alice.AccessToken, []byte(`{"body":"\ud800"}`), 400, "M_NOT_JSON"},
			{"createRoom power level override out of range", "POST", base + "/createRoom", alice.AccessToken,
				[]byte(`{"power_level_content_override":{"users_default":9007199254740992}}`), 400, "M_BAD_JSON"},
			{"createRoom initial_state float", "POST", base + "/createRoom", alice.AccessToken,
				[]byte(`{"initial_state":[{"type":"m.room.topic","content":{"topic":"t","n":0.5}}]}`), 400, "M_BAD_JSON"},
			{"createRoom creation_content out of range", "POST", base + "/createRoom", alice.AccessToken,
				[]byte(`{"creation_content":{"n":-9007199254740992}}`), 400, "M_BAD_JSON"},
			{"join reason invalid UTF-8", "POST", base + "/rooms/" + room.RoomID.String() + "/join", alice.AccessToken, []byte("{\"reason\":\"\xc3\"}"), 400, "M_NOT_JSON"},
			{"join alias without server", "POST", base + "/join/%23", alice.AccessToken, []byte(`{}`), 400, "M_INVALID_PARAM"},
			{"knock alias without server", "POST", base + "/knock/%23", alice.AccessToken, []byte(`{}`), 400, "M_INVALID_PARAM"},
			{"join bad server name", "POST", base + "/join/%23x%3Aa%3Ab", alice.AccessToken, []byte(`{}`), 400, "M_INVALID_PARAM"},
			{"join room ID with bad server name", "POST", base + "/join/%21x%3Aa%3Ab", alice.AccessToken, []byte(`{}`), 400, "M_INVALID_PARAM"},
			{"public rooms of a bad server name", "GET", base + "/publicRooms?server=a%3Ab", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
			{"NUL in path", "GET", base + "/profile/%40a%00%3Alocalhost", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
			{"invalid UTF-8 in query", "GET", base + "/rooms/" + room.RoomID.String() + "/messages?dir=b&from=%FF", alice.AccessToken, nil, 400, "M_INVALID_PARAM"},
			{"NUL in a display name", "PUT", base + "/profile/" + alice.UserID.String() + "/displayname", alice.AccessToken, []byte(`{"displayname":"a\u0000b"}`), 400, "M_BAD_JSON"},
			{"NUL in a device name", "PUT", base + "/devices/" + alice.DeviceID.String(), alice.AccessToken, []byte(`{"display_name":"a\u0000b"}`), 400, "M_BAD_JSON"},
			{"filter not UTF-8", "POST", base + "/user/" + alice.UserID.String() + "/filter", alice.AccessToken, []byte("{\"event_fields\":[\"\xff\"]}"), 400, "M_NOT_JSON"},
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
