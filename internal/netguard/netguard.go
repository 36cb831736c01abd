// Package netguard refuses outbound connections to addresses that are not
// on the public internet: loopback, private, link-local, CGNAT, multicast,
// unspecified, broadcast, documentation, benchmarking and reserved ranges of
// IPv4 and IPv6, including private IPv4 addresses embedded in IPv6
// (IPv4-mapped, 6to4, NAT64). An operator's allowlist of CIDRs overrides
// the refusal, and a denylist adds ranges to it.
//
// The check runs in net.Dialer.Control, on the address actually being
// connected, after name resolution: DNS rebinding and HTTP redirects cannot
// get around it. Federation (fedclient), URL previews (preview) and push
// gateways share it. netguard imports no other Myelin package.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is returned (wrapped) when a connection would go to an address
// the guard refuses.
var ErrRefused = errors.New("refusing to connect to a non-public address")

// Guard decides which addresses outbound connections may reach. The zero
// value refuses every non-public address and allows the rest. A Guard is
// immutable and safe for concurrent use.
type Guard struct {
	allow    []netip.Prefix
	deny     []netip.Prefix
	allowAll bool
}

// New returns a guard that refuses non-public addresses and those in deny,
// except addresses in allow (allow wins over deny, as in Synapse's
// ip_range_whitelist).
func New(allow, deny []netip.Prefix) *Guard {
	return &Guard{allow: allow, deny: deny}
}

// AllowAll returns a guard that permits every address (federation test
// setups with allow_private).
func AllowAll() *Guard { return &Guard{allowAll: true} }

// ParsePrefixes parses CIDRs such as "10.0.0.0/8" or "fd00::/8"; a bare
// address stands for itself alone (/32 or /128).
func ParsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "/") {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
			}
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Check returns nil when ip may be connected to, else an error wrapping
// ErrRefused.
func (g *Guard) Check(ip netip.Addr) error {
	if g != nil && g.allowAll {
		return nil
	}
	ip = ip.Unmap().WithZone("")
	if g != nil {
		for _, p := range g.allow {
			if p.Contains(ip) {
				return nil
			}
		}
		for _, p := range g.deny {
			if p.Contains(ip) {
				return fmt.Errorf("%s is in a denied range %s: %w", ip, p, ErrRefused)
			}
		}
	}
	if !Public(ip) {
		return fmt.Errorf("%s: %w", ip, ErrRefused)
	}
	return nil
}

// Control is a net.Dialer.Control hook that refuses the connection unless
// Check allows the address being connected to.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("connecting to %q (%s): unparsable address: %w", address, network, ErrRefused)
	}
	if err := g.Check(ap.Addr()); err != nil {
		return fmt.Errorf("connecting to %s: %w", address, err)
	}
	return nil
}

// Dialer returns a dialer whose every connection passes Check.
func (g *Guard) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: g.Control}
}

// Transport returns an HTTP transport that dials through the guard and
// ignores proxy environment variables (a proxy would hide the target's
// address from the check).
func (g *Guard) Transport() *http.Transport {
	return &http.Transport{
		DialContext:           g.Dialer(10 * time.Second).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
}
