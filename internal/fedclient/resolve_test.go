package fedclient

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/tlscert"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeDNS answers SRV and address lookups from maps; every other name
// resolves to fallback (when set).
type fakeDNS struct {
	mu       sync.Mutex
	srv      map[string][]*net.SRV // "_matrix-fed._tcp.name" → records
	ips      map[string][]net.IP
	fallback net.IP
	lookups  map[string]int
}

func (d *fakeDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := "_" + service + "._" + proto + "." + name
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lookups == nil {
		d.lookups = map[string]int{}
	}
	d.lookups[key]++
	if recs, ok := d.srv[key]; ok {
		return "", recs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
}

func (d *fakeDNS) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ips, ok := d.ips[host]
	if !ok && d.fallback != nil {
		ips = []net.IP{d.fallback}
	}
	if len(ips) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: ip})
	}
	return out, nil
}

type wellKnownAnswer struct {
	status  int
	body    string
	headers map[string]string
}

// wellKnownServer serves /.well-known/matrix/server per Host header over
// TLS with a *.test certificate from ca, counting requests per host.
type wellKnownServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]wellKnownAnswer
	hits    map[string]int
}

func newWellKnownServer(t *testing.T, ca *tlscert.CA) *wellKnownServer {
	t.Helper()
	w := &wellKnownServer{answers: map[string]wellKnownAnswer{}, hits: map[string]int{}}
	w.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		w.mu.Lock()
		w.hits[host]++
		a, ok := w.answers[host]
		w.mu.Unlock()
		if !ok || r.URL.Path != "/.well-known/matrix/server" {
			http.NotFound(rw, r)
			return
		}
		for k, v := range a.headers {
			rw.Header().Set(k, v)
		}
		if a.status == 0 {
			a.status = http.StatusOK
		}
		rw.WriteHeader(a.status)
		_, _ = io.WriteString(rw, a.body)
	}))
	cert, err := ca.Issue("*.test")
	if err != nil {
		t.Fatal(err)
	}
	w.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	w.StartTLS()
	t.Cleanup(w.Close)
	return w
}

func (w *wellKnownServer) set(host string, a wellKnownAnswer) {
	w.mu.Lock()
	w.answers[host] = a
	w.mu.Unlock()
}

func (w *wellKnownServer) count(host string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hits[host]
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testKey(t *testing.T) keys.SigningKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys.SigningKey{ID: id.KeyID("ed25519:test"), Priv: priv}
}

// discoveryClient returns a client whose DNS is dns, trusting ca, whose
// well-known requests go to wk, with loopback allowed.
func discoveryClient(t *testing.T, ca *tlscert.CA, dns DNS, wk *wellKnownServer, clock *testClock) *Client {
	t.Helper()
	caFile, _, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := newClient(config.Federation{ExtraCAFiles: []string{caFile}, AllowPrivate: true}, "origin.test", testKey(t), discard, dns, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	if wk != nil {
		u, _ := url.Parse(wk.URL)
		c.resolver.wellKnownPort = u.Port()
	}
	return c
}

func TestSplitServerName(t *testing.T) {
	for _, tc := range []struct {
		in, host, port string
		bad            bool
	}{
		{in: "example.org", host: "example.org"},
		{in: "example.org:8448", host: "example.org", port: "8448"},
		{in: "1.2.3.4", host: "1.2.3.4"},
		{in: "1.2.3.4:80", host: "1.2.3.4", port: "80"},
		{in: "[::1]", host: "::1"},
		{in: "[::1]:8448", host: "::1", port: "8448"},
		{in: "", bad: true},
		{in: "::1", bad: true},
		{in: "[::1", bad: true},
		{in: "[1.2.3.4]", bad: true},
		{in: "example.org:", bad: true},
		{in: "example.org:0", bad: true},
		{in: "example.org:65536", bad: true},
		{in: "exa_mple.org", bad: true},
		{in: "example.org/x", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			host, port, err := splitServerName(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted %q as %q %q", tc.in, host, port)
				}
				return
			}
			if err != nil || host != tc.host || port != tc.port {
				t.Fatalf("got %q %q %v, want %q %q", host, port, err, tc.host, tc.port)
			}
		})
	}
}

func TestResolveFollowsSpecOrder(t *testing.T) {
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	wk := newWellKnownServer(t, ca)
	srv := func(target string, port uint16) []*net.SRV {
		return []*net.SRV{{Target: target + ".", Port: port}}
	}
	dns := &fakeDNS{fallback: net.IPv4(127, 0, 0, 1), srv: map[string][]*net.SRV{
		"_matrix-fed._tcp.deleg-srv.test":  srv("target1.test", 8500),
		"_matrix._tcp.deleg-srv.test":      srv("wrong.test", 1),
		"_matrix._tcp.deleg-legacy.test":   srv("target2.test", 8501),
		"_matrix-fed._tcp.srv.test":        srv("target3.test", 8502),
		"_matrix-fed._tcp.badwk.test":      srv("target4.test", 8503),
		"_matrix._tcp.legacy.test":         srv("target5.test", 8504),
		"_matrix-fed._tcp.dot.test":        srv("", 0),
		"_matrix-fed._tcp.port-wk.test":    srv("never.test", 1),
		"_matrix-fed._tcp.wk-port.test":    srv("never.test", 1),
		"_matrix-fed._tcp.deleg-port.test": srv("never.test", 1),
	}}
	wk.set("wk-ip.test", wellKnownAnswer{body: `{"m.server":"10.0.0.1"}`})
	wk.set("wk-ip-port.test", wellKnownAnswer{body: `{"m.server":"[2001:db8::1]:443"}`})
	wk.set("wk-port.test", wellKnownAnswer{body: `{"m.server":"deleg-port.test:443"}`})
	wk.set("wk-srv.test", wellKnownAnswer{body: `{"m.server":"deleg-srv.test"}`})
	wk.set("wk-legacy.test", wellKnownAnswer{body: `{"m.server":"deleg-legacy.test"}`})
	wk.set("wk-plain.test", wellKnownAnswer{body: `{"m.server":"deleg-plain.test"}`})
	wk.set("badwk.test", wellKnownAnswer{body: `{"m.server":"not a name!"}`})
	wk.set("port-wk.test", wellKnownAnswer{body: `{"m.server":"never.test"}`})
	wk.set("redir.test", wellKnownAnswer{status: http.StatusFound, headers: map[string]string{
		"Location": "https://wk-port.test:" + func() string { u, _ := url.Parse(wk.URL); return u.Port() }() + "/.well-known/matrix/server",
	}})
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	c := discoveryClient(t, ca, dns, wk, clock)
	c.resolver.testHosts = map[string]string{"hs1": "127.0.0.1:9999"}
	for _, tc := range []struct {
		name, server string
		want         Target
	}{
		{"test host", "hs1", Target{[]string{"127.0.0.1:9999"}, "hs1"}},
		{"1 IP literal", "1.2.3.4", Target{[]string{"1.2.3.4:8448"}, "1.2.3.4"}},
		{"1 IP literal with port", "1.2.3.4:99", Target{[]string{"1.2.3.4:99"}, "1.2.3.4:99"}},
		{"1 IPv6 literal", "[2001:db8::2]", Target{[]string{"[2001:db8::2]:8448"}, "[2001:db8::2]"}},
		{"2 explicit port skips well-known", "port-wk.test:1234", Target{[]string{"port-wk.test:1234"}, "port-wk.test:1234"}},
		{"3.1 delegated IP", "wk-ip.test", Target{[]string{"10.0.0.1:8448"}, "10.0.0.1"}},
		{"3.1 delegated IPv6 with port", "wk-ip-port.test", Target{[]string{"[2001:db8::1]:443"}, "[2001:db8::1]:443"}},
		{"3.2 delegated port", "wk-port.test", Target{[]string{"deleg-port.test:443"}, "deleg-port.test:443"}},
		{"3 redirect followed", "redir.test", Target{[]string{"deleg-port.test:443"}, "deleg-port.test:443"}},
		{"3.3 delegated SRV matrix-fed", "wk-srv.test", Target{[]string{"target1.test:8500"}, "deleg-srv.test"}},
		{"3.4 delegated SRV matrix", "wk-legacy.test", Target{[]string{"target2.test:8501"}, "deleg-legacy.test"}},
		{"3.5 delegated 8448", "wk-plain.test", Target{[]string{"deleg-plain.test:8448"}, "deleg-plain.test"}},
		{"4 SRV matrix-fed", "srv.test", Target{[]string{"target3.test:8502"}, "srv.test"}},
		{"4 invalid well-known falls through", "badwk.test", Target{[]string{"target4.test:8503"}, "badwk.test"}},
		{"5 SRV matrix", "legacy.test", Target{[]string{"target5.test:8504"}, "legacy.test"}},
		{"6 SRV '.' means none", "dot.test", Target{[]string{"dot.test:8448"}, "dot.test"}},
		{"6 plain 8448", "plain.test", Target{[]string{"plain.test:8448"}, "plain.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Resolve(context.Background(), tc.server)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Resolve(%q) = %+v, want %+v", tc.server, got, tc.want)
			}
		})
	}
	if n := wk.count("port-wk.test"); n != 0 {
		t.Fatalf("explicit port: well-known asked %d times, want 0", n)
	}
	for _, bad := range []string{"", "a b", "x.test:notaport"} {
		if _, err := c.Resolve(context.Background(), bad); err == nil {
			t.Errorf("Resolve(%q) accepted a bad server name", bad)
		}
	}
}

func TestWellKnownCaching(t *testing.T) {
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	wk := newWellKnownServer(t, ca)
	dns := &fakeDNS{fallback: net.IPv4(127, 0, 0, 1)}
	i := 0
	for _, tc := range []struct {
		name   string
		answer wellKnownAnswer
		// after[i] advances the clock; want[i] is the request count after
		// resolving again.
		after []time.Duration
		want  []int
	}{
		{"max-age respected", wellKnownAnswer{body: `{"m.server":"a.test:1"}`, headers: map[string]string{"Cache-Control": "public, max-age=600"}},
			[]time.Duration{5 * time.Minute, 6 * time.Minute}, []int{1, 2}},
		{"default 24 hours outlives the 1 hour target cache", wellKnownAnswer{body: `{"m.server":"a.test:1"}`},
			[]time.Duration{2 * time.Hour, 23 * time.Hour}, []int{1, 2}},
		{"max-age capped at 48 hours", wellKnownAnswer{body: `{"m.server":"a.test:1"}`, headers: map[string]string{"Cache-Control": "max-age=31536000"}},
			[]time.Duration{47 * time.Hour, 2 * time.Hour}, []int{1, 2}},
		{"no-store still cached 5 minutes", wellKnownAnswer{body: `{"m.server":"a.test:1"}`, headers: map[string]string{"Cache-Control": "no-store"}},
			[]time.Duration{4 * time.Minute, 2 * time.Minute}, []int{1, 2}},
		{"Expires header", wellKnownAnswer{body: `{"m.server":"a.test:1"}`, headers: map[string]string{"Expires": time.Unix(1_700_000_000, 0).Add(30 * time.Minute).UTC().Format(http.TimeFormat)}},
			[]time.Duration{29 * time.Minute, 2 * time.Minute}, []int{1, 2}},
		{"errors cached briefly, backing off", wellKnownAnswer{status: http.StatusNotFound},
			[]time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 2 * time.Minute}, []int{1, 2, 2, 3}},
	} {
		i++
		t.Run(tc.name, func(t *testing.T) {
			host := fmt.Sprintf("cache%d.test", i)
			wk.set(host, tc.answer)
			clock := &testClock{t: time.Unix(1_700_000_000, 0)}
			c := discoveryClient(t, ca, dns, wk, clock)
			if _, err := c.Resolve(context.Background(), host); err != nil {
				t.Fatal(err)
			}
			if n := wk.count(host); n != 1 {
				t.Fatalf("first resolve: %d requests", n)
			}
			for i, d := range tc.after {
				clock.add(d)
				if _, err := c.Resolve(context.Background(), host); err != nil {
					t.Fatal(err)
				}
				if n := wk.count(host); n != tc.want[i] {
					t.Fatalf("step %d (+%v): %d well-known requests, want %d", i, d, n, tc.want[i])
				}
			}
		})
	}
}

func TestCacheTTL(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    time.Duration
	}{
		{"none", nil, 24 * time.Hour},
		{"max-age", map[string]string{"Cache-Control": "max-age=3600"}, time.Hour},
		{"max-age beats Expires", map[string]string{"Cache-Control": "max-age=3600", "Expires": now.Add(10 * time.Hour).Format(http.TimeFormat)}, time.Hour},
		{"too short", map[string]string{"Cache-Control": "max-age=1"}, 5 * time.Minute},
		{"negative", map[string]string{"Cache-Control": "max-age=-5"}, 5 * time.Minute},
		{"huge", map[string]string{"Cache-Control": "max-age=99999999999999999"}, 48 * time.Hour},
		{"garbage", map[string]string{"Cache-Control": "max-age=soon"}, 24 * time.Hour},
		{"expired Expires", map[string]string{"Expires": now.Add(-time.Hour).Format(http.TimeFormat)}, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			if got := cacheTTL(h, now); got != tc.want {
				t.Fatalf("cacheTTL = %v, want %v", got, tc.want)
			}
		})
	}
}
