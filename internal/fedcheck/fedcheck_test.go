package fedcheck_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/fedcheck"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/tlscert"
)

// fakeDNS resolves every *.test name but nowhere.test to 127.0.0.1 and
// answers SRV queries from srv.
type fakeDNS struct {
	srv map[string][]*net.SRV // "_matrix-fed._tcp.name" → records
}

func (d fakeDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := "_" + service + "._" + proto + "." + name
	if recs, ok := d.srv[key]; ok {
		return "", recs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
}

func (d fakeDNS) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if !strings.HasSuffix(host, ".test") || host == "nowhere.test" {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}, nil
}

// fake is a federation endpoint whose answers each test case breaks in
// one way.
type fake struct {
	noVersion bool
	// edit changes the key response before it is signed; tamper changes
	// the signed response.
	edit   func(resp *keys.ServerKeysResp)
	tamper func(serverName string, signed map[string]any)
	// certHost and ca make its certificate; ca nil uses the test's CA.
	certHost string
	ca       *tlscert.CA
}

// start serves f over TLS and returns its port. serverName is called at
// request time with that port, to name the server in the key response.
func (f fake) start(t *testing.T, ca *tlscert.CA, serverName func(port string) string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	key := keys.SigningKey{ID: "ed25519:fake", Priv: priv}
	var port string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_matrix/federation/v1/version":
			if f.noVersion {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(`{"server":{"name":"Fake","version":"1"}}`))
		case "/_matrix/key/v2/server":
			name := serverName(port)
			resp := keys.ServerKeysResp{
				ServerName:   name,
				VerifyKeys:   map[id.KeyID]keys.VerifyKeyJSON{key.ID: {Key: key.Public()}},
				ValidUntilTS: time.Now().Add(time.Hour).UnixMilli(),
			}
			if f.edit != nil {
				f.edit(&resp)
			}
			raw, _ := json.Marshal(resp)
			signed, err := key.SignJSON(resp.ServerName, raw)
			if err != nil {
				t.Error(err)
			}
			if f.tamper != nil {
				var m map[string]any
				_ = json.Unmarshal(signed, &m)
				f.tamper(name, m)
				signed, _ = json.Marshal(m)
			}
			_, _ = w.Write(signed)
		default:
			http.NotFound(w, r)
		}
	}))
	issuer := ca
	if f.ca != nil {
		issuer = f.ca
	}
	cert, err := issuer.Issue(f.certHost)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	port = u.Port()
	return port
}

func check(t *testing.T, name string, o fedcheck.Options) fedcheck.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep := fedcheck.Check(ctx, name, o)
	// Both renderings must work for every report.
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", text.String())
	return rep
}

func TestCheckMyelinServers(t *testing.T) {
	hs := mxtest.Federation(t, "sqlite", 1)[0]
	pool := hs.TestCA.CA.Pool()

	t.Run("ip literal", func(t *testing.T) {
		rep := check(t, hs.Config.ServerName, fedcheck.Options{RootCAs: pool, AllowPrivate: true})
		if !rep.FederationOK || len(rep.Connections) != 1 {
			t.Fatalf("report = %+v", rep)
		}
		c := rep.Connections[0]
		if c.Version == nil || c.Version.Name != "Myelin" || c.Keys == nil || len(c.Keys.VerifyKeys) != 1 || !c.TLS.Verified {
			t.Fatalf("connection = %+v", c)
		}
		if rep.WellKnown.Asked {
			t.Error("well-known asked for an IP literal")
		}
	})
	t.Run("private address refused", func(t *testing.T) {
		rep := check(t, hs.Config.ServerName, fedcheck.Options{RootCAs: pool})
		wantProblem(t, rep, "not a public address")
	})
	t.Run("untrusted CA", func(t *testing.T) {
		rep := check(t, hs.Config.ServerName, fedcheck.Options{AllowPrivate: true})
		wantProblem(t, rep, "certificate: ")
	})

	// A server named deleg.test that delegates to deleg.test:PORT through
	// the /.well-known/matrix/server it serves itself.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	caCert, caKey, err := hs.TestCA.CA.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	deleg := mxtest.Start(t, "sqlite", func(c *config.Config) {
		c.ServerName = "deleg.test"
		c.Federation.Listen = addr
		c.Federation.TLSCACert, c.Federation.TLSCAKey = caCert, caKey
		c.Federation.WellKnownServer = "deleg.test:" + port
	})
	_ = deleg
	t.Run("well-known delegation", func(t *testing.T) {
		rep := check(t, "deleg.test", fedcheck.Options{DNS: fakeDNS{}, RootCAs: pool, AllowPrivate: true, WellKnownPort: port})
		if !rep.FederationOK || rep.WellKnown.Server != "deleg.test:"+port || rep.DNS.Host != "deleg.test:"+port {
			t.Fatalf("report = %+v", rep)
		}
		if len(rep.DNS.SRV) != 0 {
			t.Errorf("SRV looked up for a delegation with a port: %+v", rep.DNS.SRV)
		}
	})
}

func TestCheckSRV(t *testing.T) {
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	port := fake{certHost: "srv.test"}.start(t, ca, func(string) string { return "srv.test" })
	var p uint16
	for _, c := range port {
		p = p*10 + uint16(c-'0')
	}
	dns := fakeDNS{srv: map[string][]*net.SRV{
		"_matrix-fed._tcp.srv.test": {{Target: "host.test.", Port: p, Priority: 10, Weight: 5}},
	}}
	// The fake answers 404 to the well-known request.
	rep := check(t, "srv.test", fedcheck.Options{DNS: dns, RootCAs: ca.Pool(), AllowPrivate: true, WellKnownPort: port})
	if !rep.FederationOK {
		t.Fatalf("report = %+v", rep)
	}
	if rep.WellKnown.Error == "" || len(rep.DNS.SRV) == 0 || len(rep.DNS.SRV[0].Records) != 1 ||
		rep.DNS.Host != "srv.test" || rep.DNS.Targets[0] != "host.test:"+port || rep.DNS.Addrs[0] != "127.0.0.1:"+port {
		t.Fatalf("discovery = %+v %+v", rep.WellKnown, rep.DNS)
	}
}

func wantProblem(t *testing.T, rep fedcheck.Report, want string) {
	t.Helper()
	if rep.FederationOK {
		t.Fatalf("federation OK, want a problem %q", want)
	}
	var all []string
	for _, c := range rep.Connections {
		all = append(all, c.Problems...)
	}
	all = append(all, rep.Error)
	if !strings.Contains(strings.Join(all, "\n"), want) {
		t.Fatalf("problems %q, want one containing %q", all, want)
	}
	var text bytes.Buffer
	_ = rep.WriteText(&text)
	if !strings.Contains(text.String(), "FAILED") || !strings.Contains(text.String(), want) {
		t.Fatalf("text report lacks FAILED or %q:\n%s", want, text.String())
	}
}

func TestCheckBrokenServers(t *testing.T) {
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		fake fake
		want string
	}{
		{name: "good", fake: fake{}},
		{name: "wrong certificate name", fake: fake{certHost: "other.test"}, want: "certificate is valid for other.test, not"},
		{name: "untrusted certificate", fake: fake{ca: otherCA}, want: "certificate signed by unknown authority"},
		{name: "no version endpoint", fake: fake{noVersion: true}, want: "GET /_matrix/federation/v1/version: HTTP 404"},
		{name: "bad key signature", fake: fake{tamper: func(name string, m map[string]any) {
			m["signatures"] = map[string]any{name: map[string]string{"ed25519:fake": strings.Repeat("A", 86)}}
		}}, want: "key ed25519:fake: signature of"},
		{name: "unsigned keys", fake: fake{tamper: func(_ string, m map[string]any) { delete(m, "signatures") }}, want: "key ed25519:fake: signature of"},
		{name: "expired keys", fake: fake{edit: func(r *keys.ServerKeysResp) {
			r.ValidUntilTS = time.Now().Add(-time.Minute).UnixMilli()
		}}, want: "is not in the future"},
		{name: "keys of another server", fake: fake{edit: func(r *keys.ServerKeysResp) {
			r.ServerName = "impostor.test"
		}}, want: `names server "impostor.test"`},
		{name: "no ed25519 key", fake: fake{edit: func(r *keys.ServerKeysResp) {
			r.VerifyKeys = map[id.KeyID]keys.VerifyKeyJSON{}
		}}, want: "no ed25519 verify key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fake.certHost == "" {
				tc.fake.certHost = "fed.test"
			}
			port := tc.fake.start(t, ca, func(port string) string { return "fed.test:" + port })
			rep := check(t, "fed.test:"+port, fedcheck.Options{DNS: fakeDNS{}, RootCAs: ca.Pool(), AllowPrivate: true})
			if tc.want == "" {
				if !rep.FederationOK {
					t.Fatalf("report = %+v", rep)
				}
				return
			}
			wantProblem(t, rep, tc.want)
		})
	}

	t.Run("unresolvable name", func(t *testing.T) {
		rep := check(t, "nowhere.test:8448", fedcheck.Options{DNS: fakeDNS{}, RootCAs: ca.Pool(), AllowPrivate: true})
		wantProblem(t, rep, "resolved to no address")
		if len(rep.DNS.Errors) == 0 {
			t.Error("no lookup error reported")
		}
	})
	t.Run("nothing listening", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ln.Close()
		rep := check(t, "fed.test:"+port, fedcheck.Options{DNS: fakeDNS{}, RootCAs: ca.Pool(), AllowPrivate: true})
		wantProblem(t, rep, "connecting: ")
	})
	t.Run("malformed name", func(t *testing.T) {
		rep := check(t, "bad_name!", fedcheck.Options{DNS: fakeDNS{}})
		wantProblem(t, rep, "bad hostname")
	})
}
