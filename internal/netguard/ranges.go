package netguard

import "net/netip"

// refused4 are the IPv4 ranges that are not globally reachable unicast
// (IANA IPv4 Special-Purpose Address Registry, plus multicast and the
// reserved class E with the broadcast address).
var refused4 = prefixes(
	"0.0.0.0/8",       // "this network", unspecified
	"10.0.0.0/8",      // RFC 1918
	"100.64.0.0/10",   // CGNAT shared address space, RFC 6598
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local
	"172.16.0.0/12",   // RFC 1918
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1 documentation
	"192.31.196.0/24", // AS112-v4
	"192.52.193.0/24", // AMT
	"192.88.99.0/24",  // deprecated 6to4 relay anycast
	"192.168.0.0/16",  // RFC 1918
	"192.175.48.0/24", // direct delegation AS112
	"198.18.0.0/15",   // benchmarking, RFC 2544
	"198.51.100.0/24", // TEST-NET-2 documentation
	"203.0.113.0/24",  // TEST-NET-3 documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, includes 255.255.255.255 broadcast
)

// refused6 are the ranges inside 2000::/3 (the only IPv6 global unicast
// space allocated) that are not globally reachable. Addresses outside
// 2000::/3 are refused anyway, except the NAT64 embedding; 6to4
// (2002::/16) is judged by its embedded IPv4 address in Public.
var refused6 = prefixes(
	"2001::/23",     // IETF protocol assignments, incl. Teredo 2001::/32 and ORCHID
	"2001:db8::/32", // documentation
	"3fff::/20",     // documentation, RFC 9637
)

var (
	global6 = netip.MustParsePrefix("2000::/3")
	sixTo4  = netip.MustParsePrefix("2002::/16")
	nat64   = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Public reports whether ip is a globally reachable unicast address, the
// built-in policy of a Guard without allowlist. IPv4-mapped (::ffff:a.b.c.d),
// NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::) addresses are judged
// by the IPv4 address they carry; everything else outside 2000::/3
// (loopback, unspecified, IPv4-compatible, ULA fc00::/7, link-local,
// site-local, multicast, discard 100::/64, local-use NAT64) is refused.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return false
	}
	if ip.Is4() {
		for _, p := range refused4 {
			if p.Contains(ip) {
				return false
			}
		}
		return true
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return Public(netip.AddrFrom4([4]byte(b[12:16])))
	case sixTo4.Contains(ip):
		return Public(netip.AddrFrom4([4]byte(b[2:6])))
	case !global6.Contains(ip):
		return false
	}
	for _, p := range refused6 {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}
