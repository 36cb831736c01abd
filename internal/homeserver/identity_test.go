package homeserver_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// identityServer is a real HTTPS identity server on loopback speaking the
// two endpoints a homeserver calls: 3pid/bind and 3pid/unbind.
type identityServer struct {
	name    string
	mu      sync.Mutex
	unbinds []string // the X-Matrix origin and mxid of each unbind
}

func startIdentityServer(t *testing.T, ca *mxtest.TestCA) *identityServer {
	t.Helper()
	cert, err := ca.CA.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	is := &identityServer{name: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_matrix/identity/v2/3pid/bind", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ SID, ClientSecret, Mxid string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer id-token":
			w.WriteHeader(401)
			_, _ = w.Write([]byte(`{"errcode":"M_UNAUTHORIZED","error":"bad token"}`))
		case body.SID != "good":
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"errcode":"M_SESSION_NOT_VALIDATED","error":"not validated"}`))
		default:
			_ = json.NewEncoder(w).Encode(map[string]any{"medium": "email", "address": "alice@example.org", "mxid": body.Mxid})
		}
	})
	mux.HandleFunc("POST /_matrix/identity/v2/3pid/unbind", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Mxid string `json:"mxid"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		auth := r.Header.Get("Authorization")
		origin := ""
		if i := strings.Index(auth, `origin="`); strings.HasPrefix(auth, "X-Matrix ") && i >= 0 {
			origin = strings.SplitN(auth[i+8:], `"`, 2)[0]
		}
		is.mu.Lock()
		is.unbinds = append(is.unbinds, origin+" "+body.Mxid)
		is.mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return is
}

func (is *identityServer) unbound() []string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return append([]string(nil), is.unbinds...)
}

// TestIdentityServerBinds: /account/3pid/bind is proxied to the named
// identity server with the client's token, its errors are passed on, and
// /3pid/unbind and deactivation unbind there with a request signed by
// this server.
func TestIdentityServerBinds(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 1)
		is := startIdentityServer(t, hs[0].TestCA)
		alice := hs[0].Client("alice")
		bind := func(sid, token, server string) error {
			_, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "account", "3pid", "bind"), map[string]any{
				"client_secret": "s3cret", "sid": sid, "id_server": server, "id_access_token": token}, nil)
			return err
		}
		type unbindResp struct {
			Result string `json:"id_server_unbind_result"`
		}
		if err := bind("good", "id-token", is.name); err != nil {
			t.Fatalf("binding: %v", err)
		}
		wantMxErr(t, "a session the identity server did not validate", bind("bad", "id-token", is.name), 400, "M_SESSION_NOT_VALIDATED")
		wantMxErr(t, "a wrong identity server token", bind("good", "nope", is.name), 401, "M_UNAUTHORIZED")
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := ln.Addr().String()
		ln.Close()
		wantMxErr(t, "an identity server that cannot be reached", bind("good", "id-token", dead), 400, "M_UNKNOWN")
		wantMxErr(t, "an id_server that is no server name", bind("good", "id-token", "https://x/"), 400, "M_INVALID_PARAM")

		var out unbindResp
		if _, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "account", "3pid", "unbind"),
			map[string]any{"medium": "email", "address": "Alice@example.org"}, &out); err != nil || out.Result != "success" {
			t.Fatalf("unbinding: %+v, %v", out, err)
		}
		want := hs[0].Config.ServerName + " " + alice.UserID.String()
		if got := is.unbound(); len(got) != 1 || got[0] != want {
			t.Fatalf("the identity server's unbinds: %v, want [%s]", got, want)
		}
		if _, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "account", "3pid", "unbind"),
			map[string]any{"medium": "email", "address": "alice@example.org"}, &out); err != nil || out.Result != "no-support" {
			t.Errorf("unbinding what is not bound: %+v, %v", out, err)
		}

		// Deactivation unbinds what is left.
		if err := bind("good", "id-token", is.name); err != nil {
			t.Fatal(err)
		}
		var deact unbindResp
		_, err := alice.MakeRequest(ctx, "POST", alice.BuildClientURL("v3", "account", "deactivate"), map[string]any{"auth": map[string]any{
			"type": "m.login.password", "password": "password-" + alice.UserID.Localpart(),
			"identifier": map[string]any{"type": "m.id.user", "user": alice.UserID.String()}}}, &deact)
		if err != nil || deact.Result != "success" {
			t.Fatalf("deactivating: %+v, %v", deact, err)
		}
		if got := is.unbound(); len(got) != 2 {
			t.Errorf("unbinds after deactivation: %v", got)
		}
	})
}
