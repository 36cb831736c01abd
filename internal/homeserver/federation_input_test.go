package homeserver_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestFederationBadInput: every federation route that takes a body
// answers a body that is not JSON with 400 M_NOT_JSON and JSON of the
// wrong shape with 400 M_BAD_JSON; a server name with a non-numeric port,
// in the X-Matrix origin or in what a client asks for, is 400
// M_INVALID_PARAM, never a 5xx.
func TestFederationBadInput(t *testing.T) {
	ctx := context.Background()
	hs := mxtest.Federation(t, "sqlite", 1)
	resident := hs[0].Config.ServerName
	alice := hs[0].Client("alice")
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	room := url.PathEscape(created.RoomID.String())
	peer := startEvil(t, hs[0].TestCA)
	peer.join(t, resident, created.RoomID)
	routes := []struct{ method, path string }{
		{"PUT", "/_matrix/federation/v1/send/bad-input"},
		{"PUT", "/_matrix/federation/v1/send_join/" + room + "/$x"},
		{"PUT", "/_matrix/federation/v2/send_join/" + room + "/$x"},
		{"PUT", "/_matrix/federation/v1/send_leave/" + room + "/$x"},
		{"PUT", "/_matrix/federation/v2/send_leave/" + room + "/$x"},
		{"PUT", "/_matrix/federation/v1/send_knock/" + room + "/$x"},
		{"PUT", "/_matrix/federation/v1/invite/" + room + "/$x"},
		{"PUT", "/_matrix/federation/v2/invite/" + room + "/$x"},
		{"POST", "/_matrix/federation/v1/get_missing_events/" + room},
		{"POST", "/_matrix/federation/v1/publicRooms"},
		{"POST", "/_matrix/federation/v1/user/keys/query"},
		{"POST", "/_matrix/federation/v1/user/keys/claim"},
		{"POST", "/_matrix/key/v2/query"},
	}
	pool := hs[0].TestCA.CA.Pool()
	raw := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	rawRequest := func(method, path, body, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "https://"+resident+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Errcode string `json:"errcode"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Errcode
	}
	xmatrix := `X-Matrix origin="` + peer.name + `",destination="` + resident + `",key="ed25519:evil",sig="AAAA"`
	for _, rt := range routes {
		// A body that is not JSON cannot be signed: it fails before the
		// signature is checked.
		if status, code := rawRequest(rt.method, rt.path, `{"pdus": [`, xmatrix); status != 400 || code != "M_NOT_JSON" {
			t.Errorf("%s %s with a body that is not JSON: %d %s, want 400 M_NOT_JSON", rt.method, rt.path, status, code)
		}
		for _, body := range []string{`[1]`, `"a string"`, `null`, `7`} {
			err := peer.client.Do(ctx, resident, rt.method, rt.path, nil, json.RawMessage(body), nil)
			var fe *fedclient.Error
			if !errors.As(err, &fe) || fe.Status != 400 || fe.Code != "M_BAD_JSON" {
				t.Errorf("%s %s with body %s: %v, want 400 M_BAD_JSON", rt.method, rt.path, body, err)
			}
		}
	}

	badOrigin := `X-Matrix origin="127.0.0.1:abc",destination="` + resident + `",key="ed25519:evil",sig="AAAA"`
	if status, code := rawRequest("GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Ab", "", badOrigin); status != 400 || code != "M_INVALID_PARAM" {
		t.Errorf("an X-Matrix origin with a non-numeric port: %d %s, want 400 M_INVALID_PARAM", status, code)
	}
	for name, try := range map[string]func() error{
		"profile": func() error {
			_, err := alice.GetProfile(ctx, "@a:host:abc")
			return err
		},
		"profile field": func() error {
			_, err := alice.GetDisplayName(ctx, "@a:host:abc")
			return err
		},
		"alias": func() error {
			_, err := alice.ResolveAlias(ctx, "#a:host:abc")
			return err
		},
		"public rooms": func() error {
			_, err := alice.PublicRooms(ctx, &mautrix.ReqPublicRooms{Server: "host:abc"})
			return err
		},
		"join by alias": func() error {
			_, err := alice.JoinRoom(ctx, "#a:host:abc", nil)
			return err
		},
		"join via": func() error {
			_, err := alice.JoinRoom(ctx, "!a:host:abc", &mautrix.ReqJoinRoom{Via: []string{"host:abc"}})
			return err
		},
	} {
		err := try()
		var herr mautrix.HTTPError
		if !errors.As(err, &herr) || herr.RespError == nil || herr.RespError.ErrCode != "M_INVALID_PARAM" || herr.Response.StatusCode != 400 {
			t.Errorf("%s with server host:abc: %v, want 400 M_INVALID_PARAM", name, err)
		}
	}
}

// TestRemoteProfileAndAlias: the profile of a user of another server and
// an alias of another server are asked of that server (query/profile,
// query/directory).
func TestRemoteProfileAndAlias(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		if err := bob.SetDisplayName(ctx, "Bob Remote"); err != nil {
			t.Fatal(err)
		}
		if err := bob.SetAvatarURL(ctx, id.ContentURI{Homeserver: hs[1].Config.ServerName, FileID: "avatar"}); err != nil {
			t.Fatal(err)
		}
		profile, err := alice.GetProfile(ctx, bob.UserID)
		if err != nil || profile.DisplayName != "Bob Remote" || profile.AvatarURL.String() != "mxc://"+hs[1].Config.ServerName+"/avatar" {
			t.Fatalf("remote profile: %+v, %v", profile, err)
		}
		name, err := alice.GetDisplayName(ctx, bob.UserID)
		if err != nil || name.DisplayName != "Bob Remote" {
			t.Fatalf("remote displayname: %+v, %v", name, err)
		}
		var herr mautrix.HTTPError
		if _, err := alice.GetProfile(ctx, id.UserID("@nobody:"+hs[1].Config.ServerName)); !errors.As(err, &herr) || herr.Response.StatusCode != 404 {
			t.Errorf("profile of an unknown remote user: %v, want 404", err)
		}

		created, err := bob.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "remote"})
		if err != nil {
			t.Fatal(err)
		}
		resolved, err := alice.ResolveAlias(ctx, id.RoomAlias("#remote:"+hs[1].Config.ServerName))
		if err != nil || resolved.RoomID != created.RoomID || len(resolved.Servers) == 0 {
			t.Fatalf("remote alias: %+v, %v", resolved, err)
		}
		if _, err := alice.ResolveAlias(ctx, id.RoomAlias("#missing:"+hs[1].Config.ServerName)); !errors.As(err, &herr) || herr.Response.StatusCode != 404 {
			t.Errorf("unknown remote alias: %v, want 404", err)
		}
	})
}
