package federationapi_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/federationapi"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/keys"
)

// sign returns an X-Matrix header for the request as the spec's example
// code builds it.
func sign(t testing.TB, k keys.SigningKey, method, uri, origin, dest string, body string) string {
	t.Helper()
	obj := map[string]any{"method": method, "uri": uri, "origin": origin, "destination": dest}
	if body != "" {
		obj["content"] = json.RawMessage(body)
	}
	msg, err := canonicaljson.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.Priv, msg))
	return fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="%s",sig="%s"`, origin, dest, k.ID, sig)
}

func TestAuthenticate(t *testing.T) {
	remote, other := newKey(t, "r1"), newKey(t, "r1")
	now := time.Unix(1_700_000_000, 0)
	keyFunc := func(_ context.Context, server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
		switch {
		case server == "remote.test" && keyID == remote.ID:
			return remote.Public(), now.Add(time.Hour), nil
		case server == "remote.test" && keyID == "ed25519:expired":
			return other.Public(), now.Add(-time.Hour), nil
		}
		return "", time.Time{}, keys.ErrKeyNotFound
	}
	a := &federationapi.Authenticator{ServerName: "local.test", Keys: keyFunc, Now: func() time.Time { return now }}
	handler := (&httpx.Adapter{Log: discard}).Wrap(a.Require(func(w http.ResponseWriter, r *http.Request) error {
		var body map[string]any
		if err := httpx.DecodeJSON(r, &body); err != nil {
			return err
		}
		return httpx.OK(w, map[string]any{"origin": federationapi.Origin(r.Context()), "body": body})
	}))
	const uri = "/_matrix/federation/v1/send/txn1?x=%2Fy"
	const body = `{"pdus":[],"edus":[{"a":"b"}]}`
	good := sign(t, remote, "PUT", uri, "remote.test", "local.test", body)
	for _, tc := range []struct {
		name    string
		method  string
		body    string
		headers []string
		status  int
		errcode string
	}{
		{"good", "PUT", body, []string{good}, 200, ""},
		{"good GET without body", "GET", "", []string{sign(t, remote, "GET", uri, "remote.test", "local.test", "")}, 200, ""},
		{"empty object body is signed", "PUT", "{}", []string{sign(t, remote, "PUT", uri, "remote.test", "local.test", "{}")}, 200, ""},
		{"no destination (pre-v1.3 sender)", "PUT", body, []string{strings.Replace(good, `destination="local.test",`, "", 1)}, 200, ""},
		{"second of two headers valid", "PUT", body, []string{sign(t, other, "PUT", uri, "remote.test", "local.test", body), good}, 200, ""},
		{"missing header", "PUT", body, nil, 401, "M_UNAUTHORIZED"},
		{"other scheme", "PUT", body, []string{"Bearer abc"}, 401, "M_UNAUTHORIZED"},
		{"malformed", "PUT", body, []string{`X-Matrix origin="remote.test"`}, 401, "M_UNAUTHORIZED"},
		{"wrong destination", "PUT", body, []string{sign(t, remote, "PUT", uri, "remote.test", "elsewhere.test", body)}, 401, "M_UNAUTHORIZED"},
		{"bad signature", "PUT", body, []string{sign(t, other, "PUT", uri, "remote.test", "local.test", body)}, 401, "M_UNAUTHORIZED"},
		{"body changed", "PUT", `{"pdus":[]}`, []string{good}, 401, "M_UNAUTHORIZED"},
		{"method changed", "POST", body, []string{good}, 401, "M_UNAUTHORIZED"},
		{"unknown key", "PUT", body, []string{strings.Replace(good, string(remote.ID), "ed25519:unknown", 1)}, 401, "M_UNAUTHORIZED"},
		{"expired key", "PUT", body, []string{strings.Replace(good, string(remote.ID), "ed25519:expired", 1)}, 401, "M_UNAUTHORIZED"},
		{"unknown origin", "PUT", body, []string{sign(t, remote, "PUT", uri, "nobody.test", "local.test", body)}, 401, "M_UNAUTHORIZED"},
		{"headers with different origins", "PUT", body, []string{good, sign(t, remote, "PUT", uri, "nobody.test", "local.test", body)}, 401, "M_UNAUTHORIZED"},
		{"origin not a server name", "PUT", body, []string{sign(t, remote, "PUT", uri, "remote.test/../x", "local.test", body)}, 400, "M_INVALID_PARAM"},
		{"origin with a non-numeric port", "PUT", body, []string{sign(t, remote, "PUT", uri, "remote.test:abc", "local.test", body)}, 400, "M_INVALID_PARAM"},
		{"body not JSON", "PUT", `{"pdus":`, []string{good}, 400, "M_NOT_JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, uri, strings.NewReader(tc.body))
			for _, h := range tc.headers {
				req.Header.Add("Authorization", h)
			}
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			var resp struct {
				Errcode string `json:"errcode"`
				Origin  string `json:"origin"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &resp)
			if resp.Errcode != tc.errcode {
				t.Fatalf("errcode %q, want %q", resp.Errcode, tc.errcode)
			}
			if tc.status == 200 && resp.Origin != "remote.test" {
				t.Fatalf("origin %q, want remote.test", resp.Origin)
			}
		})
	}
}

func TestParseXMatrix(t *testing.T) {
	want := federationapi.XMatrix{Origin: "origin.test:8448", Destination: "dest.test", Key: "ed25519:k1", Sig: "ABC/+d"}
	for _, tc := range []struct {
		name   string
		header string
		ok     bool
		bad    bool
	}{
		{"canonical", `X-Matrix origin="origin.test:8448",destination="dest.test",key="ed25519:k1",sig="ABC/+d"`, true, false},
		{"case, spaces and order", `x-matrix  SIG="ABC/+d" , Key="ed25519:k1",	origin="origin.test:8448", destination=dest.test`, true, false},
		{"unquoted with colons", `X-Matrix origin=origin.test:8448,destination=dest.test,key=ed25519:k1,sig=ABC/+d`, true, false},
		{"escapes", `X-Matrix origin="origin\.test:8448",destination="dest.test",key="ed25519:k1",sig="ABC/+d",extra="a\"b"`, true, false},
		{"other scheme", `Bearer xyz`, false, false},
		{"missing sig", `X-Matrix origin="o",key="ed25519:k1"`, true, true},
		{"unterminated", `X-Matrix origin="o,key="ed25519:k1",sig="x`, true, true},
		{"no comma", `X-Matrix origin="o" key="k" sig="s"`, true, true},
		{"duplicate", `X-Matrix origin="o",origin="p",key="k",sig="s"`, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := federationapi.ParseXMatrix(tc.header)
			if ok != tc.ok || (err != nil) != tc.bad {
				t.Fatalf("ok %v err %v, want ok %v bad %v", ok, err, tc.ok, tc.bad)
			}
			if ok && !tc.bad && got != want {
				t.Fatalf("parsed %+v, want %+v", got, want)
			}
		})
	}
}

func TestCheckACL(t *testing.T) {
	const acl = `{"allow":["*", 3],"deny":["evil.com","*.evil.com","b?d.org","EVIL.NET"],"allow_ip_literals":false}`
	for _, tc := range []struct {
		name, content, server string
		allowed               bool
	}{
		{"no ACL event", "", "anything.org", true},
		{"null content", "null", "anything.org", true},
		{"allowed by *", acl, "good.org", true},
		{"denied exactly", acl, "evil.com", false},
		{"port ignored", acl, "evil.com:8448", false},
		{"subdomain glob", acl, "matrix.evil.com", false},
		{"glob needs the dot", acl, "notevil.com", true},
		{"? is one character", acl, "bad.org", false},
		{"? is not two", acl, "baad.org", true},
		{"case-insensitive", acl, "Evil.Net", false},
		{"IPv4 literal denied", acl, "1.2.3.4", false},
		{"IPv6 literal denied", acl, "[::1]:8448", false},
		{"IP literals allowed by default", `{"allow":["*"]}`, "1.2.3.4:8448", true},
		{"non-boolean allow_ip_literals means true", `{"allow":["*"],"allow_ip_literals":"no"}`, "1.2.3.4", true},
		{"no allow list denies all", `{"deny":[]}`, "good.org", false},
		{"allow list only", `{"allow":["*.example.org","example.org"]}`, "hs.example.org", true},
		{"not in allow list", `{"allow":["*.example.org"]}`, "example.com", false},
		{"deny beats allow", `{"allow":["example.org"],"deny":["example.org"]}`, "example.org", false},
		{"malformed content allows nobody", `[1,2]`, "good.org", false},
		{"star matches empty", `{"allow":["a*"]}`, "a", true},
		{"multiple stars", `{"allow":["*.*.org"]}`, "a.b.org", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := federationapi.CheckACL(json.RawMessage(tc.content), tc.server); got != tc.allowed {
				t.Fatalf("CheckACL(%s, %q) = %v, want %v", tc.content, tc.server, got, tc.allowed)
			}
		})
	}
}

func TestWellKnownServer(t *testing.T) {
	for _, tc := range []struct {
		configured string
		status     int
		body       string
	}{
		{"", 404, `"errcode":"M_NOT_FOUND"`},
		{"matrix.example.org:443", 200, `{"m.server":"matrix.example.org:443"}`},
	} {
		mux := http.NewServeMux()
		(&federationapi.KeyServer{WellKnownServer: tc.configured}).Register(mux, &httpx.Adapter{Log: discard})
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/matrix/server", nil))
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("configured %q: %d %s, want %d with %s", tc.configured, rec.Code, rec.Body, tc.status, tc.body)
		}
	}
}

// BenchmarkAuthenticate measures X-Matrix verification of a small PUT with
// the key already known (the steady state of federation traffic).
func BenchmarkAuthenticate(b *testing.B) {
	remote := newKey(b, "r1")
	until := time.Now().Add(time.Hour)
	a := &federationapi.Authenticator{ServerName: "local.test", Keys: func(context.Context, string, id.KeyID, time.Time) (id.SigningKey, time.Time, error) {
		return remote.Public(), until, nil
	}}
	const uri = "/_matrix/federation/v1/send/txn1"
	body := `{"origin":"remote.test","origin_server_ts":1,"pdus":[{"type":"m.room.message","content":{"body":"hello"}}]}`
	header := sign(b, remote, "PUT", uri, "remote.test", "local.test", body)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("PUT", uri, strings.NewReader(body))
		req.Header.Set("Authorization", header)
		if _, err := a.Authenticate(req); err != nil {
			b.Fatal(err)
		}
	}
}
