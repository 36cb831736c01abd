package fedclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"time"
)

// Discovery is what server discovery found for a server name, step by
// step, for diagnostics such as `myelin check-federation`. Requests use
// Target as Client.Resolve would.
type Discovery struct {
	// WellKnownAsked reports whether /.well-known/matrix/server was asked:
	// not for IP literals and names with an explicit port.
	WellKnownAsked bool
	// WellKnown is the m.server it delegated to; empty when there was none.
	WellKnown string
	// WellKnownErr says why there was no delegation (not served, malformed,
	// unreachable); nil when one was found or none was asked for.
	WellKnownErr error
	// SRV lists the SRV lookups made, in order.
	SRV []SRVLookup
	// Target is where federation requests go.
	Target Target
}

// SRVLookup is one SRV query and its answer.
type SRVLookup struct {
	// Name is the queried name, e.g. _matrix-fed._tcp.example.org.
	Name    string
	Records []*net.SRV
	Err     error
}

// DiscoverOptions configures Discover.
type DiscoverOptions struct {
	// DNS answers SRV and address lookups; nil uses net.DefaultResolver.
	DNS DNS
	// RootCAs verify the /.well-known server's certificate; nil uses the
	// system pool.
	RootCAs *x509.CertPool
	// AllowPrivate lets the well-known request go to private addresses.
	AllowPrivate bool
	// WellKnownPort replaces 443 for the well-known request (tests).
	WellKnownPort string
}

// Discover runs server discovery for serverName without caches and
// reports each step. The error is non-nil only for a malformed name.
func Discover(ctx context.Context, serverName string, o DiscoverOptions) (Discovery, error) {
	dns := o.DNS
	if dns == nil {
		dns = net.DefaultResolver
	}
	d := newDialer(dns, o.AllowPrivate)
	transport := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
	}
	defer transport.CloseIdleConnections()
	r := newResolver(dns, &http.Client{Transport: transport, Timeout: 15 * time.Second}, nil, time.Now)
	r.wellKnownPort = o.WellKnownPort

	host, port, err := splitServerName(serverName)
	if err != nil {
		return Discovery{}, err
	}
	var out Discovery
	if net.ParseIP(host) == nil && port == "" {
		out.WellKnownAsked = true
		delegated, ttl, err := r.fetchWellKnown(ctx, host)
		out.WellKnown, out.WellKnownErr = delegated, err
		// Seed the cache so that resolve below uses this very answer.
		r.known[host] = wellKnownEntry{delegated: delegated, expires: time.Now().Add(max(ttl, time.Minute))}
		srvName := host
		if delegated != "" {
			dhost, dport, _ := splitServerName(delegated)
			srvName = dhost
			if net.ParseIP(dhost) != nil || dport != "" {
				srvName = ""
			}
		}
		if srvName != "" {
			for _, service := range []string{"matrix-fed", "matrix"} {
				_, recs, err := dns.LookupSRV(ctx, service, "tcp", srvName)
				out.SRV = append(out.SRV, SRVLookup{Name: "_" + service + "._tcp." + srvName, Records: recs, Err: err})
			}
		}
	}
	out.Target, _, err = r.resolve(ctx, serverName)
	return out, err
}
