package fedclient

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/tlscert"
)

type seenRequest struct {
	method, uri, host, sni, auth string
	body                         []byte
}

// remote is a TLS server for "hs2.test" that records requests and answers
// with the handler's status and body.
type remote struct {
	*httptest.Server
	mu     sync.Mutex
	seen   []seenRequest
	status int
	body   string
}

func newRemote(t *testing.T, ca *tlscert.CA, name string) *remote {
	t.Helper()
	rm := &remote{status: http.StatusOK, body: `{}`}
	rm.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rm.mu.Lock()
		rm.seen = append(rm.seen, seenRequest{r.Method, r.RequestURI, r.Host, r.TLS.ServerName, r.Header.Get("Authorization"), body})
		status, answer := rm.status, rm.body
		rm.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	cert, err := ca.Issue(name)
	if err != nil {
		t.Fatal(err)
	}
	rm.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	rm.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are expected
	rm.StartTLS()
	t.Cleanup(rm.Close)
	return rm
}

func (rm *remote) last(t *testing.T) seenRequest {
	t.Helper()
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if len(rm.seen) == 0 {
		t.Fatal("the remote saw no request")
	}
	return rm.seen[len(rm.seen)-1]
}

func (rm *remote) answer(status int, body string) {
	rm.mu.Lock()
	rm.status, rm.body = status, body
	rm.mu.Unlock()
}

// verifyXMatrix checks the request's X-Matrix signature with pub.
func verifyXMatrix(t *testing.T, req seenRequest, origin, dest string, pub ed25519.PublicKey) {
	t.Helper()
	params := map[string]string{}
	for _, p := range strings.Split(strings.TrimPrefix(req.auth, "X-Matrix "), ",") {
		k, v, _ := strings.Cut(p, "=")
		params[k] = strings.Trim(v, `"`)
	}
	if params["origin"] != origin || params["destination"] != dest || params["key"] != "ed25519:test" {
		t.Fatalf("X-Matrix header %q: wrong origin, destination or key", req.auth)
	}
	signable := map[string]any{"method": req.method, "uri": req.uri, "origin": origin, "destination": dest}
	if len(req.body) > 0 {
		signable["content"] = json.RawMessage(req.body)
	}
	msg, err := canonicaljson.Marshal(signable)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.RawStdEncoding.DecodeString(params["sig"])
	if err != nil || !ed25519.Verify(pub, msg, sig) {
		t.Fatalf("X-Matrix signature does not verify over %s", msg)
	}
}

func TestDoSignsAndReachesTestHost(t *testing.T) {
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	rm := newRemote(t, ca, "hs2.test")
	caFile, _, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	cfg := config.Federation{ExtraCAFiles: []string{caFile}, AllowPrivate: true, TestHosts: map[string]string{"hs2.test": rm.Listener.Addr().String()}}
	c, err := New(cfg, "hs1.test", key, discard)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Priv.Public().(ed25519.PublicKey)
	ctx := context.Background()

	rm.answer(200, `{"auth_chain_ids":["$a"],"pdu_ids":["$b","$c"]}`)
	ids, err := c.GetStateIDs(ctx, "hs2.test", "!room:hs2.test", "$ev/with+slash")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids.PDUIDs) != 2 || ids.AuthChainIDs[0] != "$a" {
		t.Fatalf("decoded %+v", ids)
	}
	req := rm.last(t)
	if want := "/_matrix/federation/v1/state_ids/%21room:hs2.test?event_id=%24ev%2Fwith%2Bslash"; req.uri != want {
		t.Fatalf("request URI %s, want %s", req.uri, want)
	}
	if req.host != "hs2.test" || req.sni != "hs2.test" {
		t.Fatalf("Host %q, SNI %q; want hs2.test for both", req.host, req.sni)
	}
	verifyXMatrix(t, req, "hs1.test", "hs2.test", pub)

	rm.answer(200, `{"origin":"hs2.test","auth_chain":[{"type":"x"}],"state":[],"members_omitted":true}`)
	join, err := c.SendJoin(ctx, "hs2.test", "!room:hs2.test", "$join/ev", json.RawMessage(`{"type":"m.room.member"}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if !join.MembersOmitted || len(join.AuthChain) != 1 || string(join.AuthChain[0]) != `{"type":"x"}` {
		t.Fatalf("decoded %+v", join)
	}
	req = rm.last(t)
	if req.method != http.MethodPut || !strings.HasPrefix(req.uri, "/_matrix/federation/v2/send_join/%21room:hs2.test/$join%2Fev?omit_members=true") {
		t.Fatalf("%s %s", req.method, req.uri)
	}
	verifyXMatrix(t, req, "hs1.test", "hs2.test", pub)

	// POST without a body still sends and signs {}.
	if err := c.Do(ctx, "hs2.test", http.MethodPost, "/_matrix/federation/v1/user/keys/query", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if req = rm.last(t); string(req.body) != "{}" {
		t.Fatalf("empty POST sent %q", req.body)
	}
	verifyXMatrix(t, req, "hs1.test", "hs2.test", pub)

	rm.answer(403, `{"errcode":"M_FORBIDDEN","error":"not in room"}`)
	_, err = c.MakeJoin(ctx, "hs2.test", "!room:hs2.test", "@u:hs1.test", []id.RoomVersion{"10", "11"})
	var fe *Error
	if !errors.As(err, &fe) || fe.Status != 403 || fe.Code != "M_FORBIDDEN" || fe.Message != "not in room" || !IsStatus(err, 403) {
		t.Fatalf("err = %#v, want *Error 403 M_FORBIDDEN", err)
	}
	if req = rm.last(t); !strings.HasSuffix(req.uri, "?ver=10&ver=11") {
		t.Fatalf("make_join URI %s", req.uri)
	}
	rm.answer(502, `<html>bad gateway</html>`)
	if err := c.Do(ctx, "hs2.test", http.MethodGet, "/_matrix/federation/v1/version", nil, nil, nil); !errors.As(err, &fe) || fe.Status != 502 || fe.Code != "" {
		t.Fatalf("non-JSON error: %v", err)
	}

	rm.answer(200, `{"pdus":[`+strings.Repeat(`{"a":1},`, 100)+`{}]}`)
	c.maxResponse = 200
	if _, err := c.GetEvent(ctx, "hs2.test", "$x"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized answer: err %v", err)
	}
}

func TestDoVerifiesCertificates(t *testing.T) {
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	rm := newRemote(t, ca, "hs2.test")
	addr := rm.Listener.Addr().String()
	otherFile, _, err := other.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	caFile, _, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  config.Federation
	}{
		{"untrusted CA", config.Federation{ExtraCAFiles: []string{otherFile}, AllowPrivate: true, TestHosts: map[string]string{"hs2.test": addr}}},
		{"certificate for another name", config.Federation{ExtraCAFiles: []string{caFile}, AllowPrivate: true, TestHosts: map[string]string{"hs3.test": addr}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg, "hs1.test", testKey(t), discard)
			if err != nil {
				t.Fatal(err)
			}
			dest := "hs2.test"
			if _, ok := tc.cfg.TestHosts[dest]; !ok {
				dest = "hs3.test"
			}
			var certErr *tls.CertificateVerificationError
			if err := c.Do(context.Background(), dest, http.MethodGet, "/_matrix/federation/v1/version", nil, nil, nil); !errors.As(err, &certErr) {
				t.Fatalf("err = %v, want a certificate verification error", err)
			}
		})
	}
	if _, err := New(config.Federation{ExtraCAFiles: []string{"/nonexistent.pem"}}, "hs1.test", testKey(t), discard); err == nil {
		t.Fatal("missing CA file accepted")
	}
}

func TestPrivateAddressesRefused(t *testing.T) {
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	rm := newRemote(t, ca, "hs2.test")
	_, port, _ := net.SplitHostPort(rm.Listener.Addr().String())
	// DNS answers public-looking names with private addresses, as a
	// rebinding attacker would.
	dns := &fakeDNS{ips: map[string][]net.IP{
		"rebind.test": {net.ParseIP("10.1.2.3"), net.ParseIP("127.0.0.1")},
		"mapped.test": {net.ParseIP("::ffff:127.0.0.1")},
	}}
	c, err := newClient(config.Federation{TestHosts: map[string]string{"hs2.test": rm.Listener.Addr().String()}}, "hs1.test", testKey(t), discard, dns, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"hs2.test", "rebind.test:" + port, "mapped.test:" + port, "127.0.0.1:" + port, "[::1]:" + port, "0.0.0.0:" + port} {
		t.Run(dest, func(t *testing.T) {
			err := c.Do(context.Background(), dest, http.MethodGet, "/_matrix/federation/v1/version", nil, nil, nil)
			if !errors.Is(err, ErrPrivateAddress) {
				t.Fatalf("err = %v, want ErrPrivateAddress", err)
			}
		})
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if len(rm.seen) != 0 {
		t.Fatalf("the private server was reached %d times", len(rm.seen))
	}
}

func TestPublic(t *testing.T) {
	for _, tc := range []struct {
		ip     string
		public bool
	}{
		{"8.8.8.8", true},
		{"2001:4860:4860::8888", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"10.0.0.1", false},
		{"172.16.5.4", false},
		{"192.168.1.1", false},
		{"169.254.1.1", false},
		{"fe80::1", false},
		{"fd00::1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:8.8.8.8", true},
	} {
		if got := Public(netip.MustParseAddr(tc.ip)); got != tc.public {
			t.Errorf("Public(%s) = %v, want %v", tc.ip, got, tc.public)
		}
	}
}

func TestDoThroughDelegationAndSRV(t *testing.T) {
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	delegated := newRemote(t, ca, "deleg.test")
	viaSRV := newRemote(t, ca, "srvname.test")
	wk := newWellKnownServer(t, ca)
	_, delegatedPort, _ := net.SplitHostPort(delegated.Listener.Addr().String())
	_, srvPort, _ := net.SplitHostPort(viaSRV.Listener.Addr().String())
	wk.set("wkname.test", wellKnownAnswer{body: `{"m.server":"deleg.test:` + delegatedPort + `"}`})
	port, _ := net.LookupPort("tcp", srvPort)
	dns := &fakeDNS{fallback: net.IPv4(127, 0, 0, 1), srv: map[string][]*net.SRV{
		"_matrix-fed._tcp.srvname.test": {{Target: "backend.test.", Port: uint16(port)}},
	}}
	c := discoveryClient(t, ca, dns, wk, &testClock{t: time.Now()})
	key := c.key.Priv.Public().(ed25519.PublicKey)
	for _, tc := range []struct {
		dest      string
		rm        *remote
		host, sni string
	}{
		{"wkname.test", delegated, "deleg.test:" + delegatedPort, "deleg.test"},
		{"srvname.test", viaSRV, "srvname.test", "srvname.test"},
	} {
		t.Run(tc.dest, func(t *testing.T) {
			if err := c.Do(context.Background(), tc.dest, http.MethodGet, "/_matrix/federation/v1/version", nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			req := tc.rm.last(t)
			if req.host != tc.host || req.sni != tc.sni {
				t.Fatalf("Host %q SNI %q, want %q and %q", req.host, req.sni, tc.host, tc.sni)
			}
			// Signatures name the server, never the delegated host.
			verifyXMatrix(t, req, "origin.test", tc.dest, key)
		})
	}
}
