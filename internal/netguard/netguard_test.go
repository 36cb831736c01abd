package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestPublic(t *testing.T) {
	cases := []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"93.184.216.34", true},
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001:80b::200e", true},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::808:808", true},    // NAT64 of 8.8.8.8
		{"2002:808:808::1", true},     // 6to4 of 8.8.8.8
		{"100.63.255.255", true},      // just below CGNAT
		{"100.128.0.0", true},         // just above CGNAT
		{"172.32.0.1", true},          // just above 172.16/12
		{"198.20.0.1", true},          // just above benchmarking
		{"223.255.255.255", true},     // last before multicast
		{"0.0.0.0", false},            // unspecified
		{"0.1.2.3", false},            // this network
		{"127.0.0.1", false},          // loopback
		{"127.255.255.254", false},    // loopback
		{"10.0.0.1", false},           // RFC 1918
		{"172.16.0.1", false},         // RFC 1918
		{"172.31.255.255", false},     // RFC 1918
		{"192.168.1.1", false},        // RFC 1918
		{"100.64.0.1", false},         // CGNAT
		{"100.127.255.255", false},    // CGNAT
		{"169.254.169.254", false},    // link-local (cloud metadata)
		{"192.0.0.8", false},          // IETF protocol assignments
		{"192.0.2.1", false},          // TEST-NET-1
		{"198.51.100.7", false},       // TEST-NET-2
		{"203.0.113.9", false},        // TEST-NET-3
		{"198.18.0.1", false},         // benchmarking
		{"198.19.255.255", false},     // benchmarking
		{"192.88.99.1", false},        // 6to4 relay anycast
		{"224.0.0.1", false},          // multicast
		{"239.255.255.250", false},    // multicast (SSDP)
		{"240.0.0.1", false},          // reserved
		{"255.255.255.255", false},    // broadcast
		{"::", false},                 // unspecified
		{"::1", false},                // loopback
		{"::127.0.0.1", false},        // IPv4-compatible (deprecated)
		{"::ffff:127.0.0.1", false},   // IPv4-mapped loopback
		{"::ffff:10.1.2.3", false},    // IPv4-mapped private
		{"::ffff:169.254.1.1", false}, // IPv4-mapped link-local
		{"64:ff9b::7f00:1", false},    // NAT64 of 127.0.0.1
		{"64:ff9b::a00:1", false},     // NAT64 of 10.0.0.1
		{"64:ff9b:1::1", false},       // local-use NAT64
		{"2002:7f00:1::1", false},     // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", false},   // 6to4 of 192.168.1.1
		{"2002:a9fe:a9fe::", false},   // 6to4 of 169.254.169.254
		{"fc00::1", false},            // ULA
		{"fd12:3456::1", false},       // ULA
		{"fe80::1", false},            // link-local
		{"fe80::1%eth0", false},       // link-local with zone
		{"fec0::1", false},            // site-local
		{"ff02::1", false},            // multicast
		{"ff0e::1", false},            // global multicast
		{"100::1", false},             // discard-only
		{"2001::1", false},            // Teredo
		{"2001:db8::1", false},        // documentation
		{"3fff::1", false},            // documentation
		{"4000::1", false},            // unallocated
	}
	for _, c := range cases {
		t.Run(c.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(c.ip)
			if got := Public(ip); got != c.want {
				t.Errorf("Public(%s) = %v, want %v", c.ip, got, c.want)
			}
			if err := New(nil, nil).Check(ip); (err == nil) != c.want || (err != nil && !errors.Is(err, ErrRefused)) {
				t.Errorf("Check(%s) = %v, want allowed=%v", c.ip, err, c.want)
			}
		})
	}
}

func TestAllowDeny(t *testing.T) {
	allow, err := ParsePrefixes([]string{"127.0.0.0/8", "fd00::/8", "::ffff:10.1.0.0/112", "192.168.5.5"})
	if err != nil {
		t.Fatal(err)
	}
	deny, err := ParsePrefixes([]string{"8.8.0.0/16", "127.0.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	g := New(allow, deny)
	cases := []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"::ffff:127.0.0.1", true},
		{"127.0.0.5", true}, // allow wins over deny
		{"fd00::5", true},
		{"10.1.2.3", true},
		{"10.2.0.1", false},
		{"192.168.5.5", true},
		{"192.168.5.6", false},
		{"::1", false},
		{"8.8.8.8", false}, // denied though public
		{"8.9.0.1", true},
	}
	for _, c := range cases {
		if err := g.Check(netip.MustParseAddr(c.ip)); (err == nil) != c.want {
			t.Errorf("Check(%s) = %v, want allowed=%v", c.ip, err, c.want)
		}
	}
	if _, err := ParsePrefixes([]string{"10.0.0.0/33"}); err == nil {
		t.Error("ParsePrefixes accepted 10.0.0.0/33")
	}
	if _, err := ParsePrefixes([]string{"not-an-ip"}); err == nil {
		t.Error("ParsePrefixes accepted not-an-ip")
	}
	if err := AllowAll().Check(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("AllowAll refused loopback: %v", err)
	}
}

// TestTransport dials a real loopback server by IP and by a name that
// resolves to it: the refusal happens on the connected address.
func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	loop, _ := ParsePrefixes([]string{"127.0.0.0/8"})
	for _, tc := range []struct {
		name  string
		guard *Guard
		url   string
		ok    bool
	}{
		{"default refuses 127.0.0.1", New(nil, nil), "http://127.0.0.1:" + port, false},
		{"default refuses localhost", New(nil, nil), "http://localhost:" + port, false},
		{"allowlisted 127.0.0.1", New(loop, nil), "http://127.0.0.1:" + port, true},
		{"allowlisted localhost", New(loop, nil), "http://localhost:" + port, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.guard.Transport()
			defer tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.url, nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if tc.ok {
				if err != nil {
					t.Fatalf("GET %s: %v", tc.url, err)
				}
				resp.Body.Close()
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("GET %s succeeded, want refusal", tc.url)
			}
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("GET %s: %v, want ErrRefused", tc.url, err)
			}
		})
	}
}
