package fedclient

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// ErrPrivateAddress is returned (wrapped) when a federation connection
// would go to a loopback, private, link-local, unspecified or multicast
// address and private addresses are not allowed.
var ErrPrivateAddress = errors.New("refusing to connect to a non-public address")

// dialer connects to federation targets. It resolves names itself and
// checks each resolved IP before dialling that exact IP, so a DNS answer
// that changes between check and connect (rebinding) cannot slip through.
type dialer struct {
	dns          DNS
	net          net.Dialer
	allowPrivate bool
}

type targetKey struct{}

// withTarget makes the transport dial t's addresses instead of the URL host.
func withTarget(ctx context.Context, t Target) context.Context {
	return context.WithValue(ctx, targetKey{}, t)
}

// DialContext dials the Target in ctx when there is one, else addr.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	addrs := []string{addr}
	if t, ok := ctx.Value(targetKey{}).(Target); ok && len(t.Addrs) > 0 {
		addrs = t.Addrs
	}
	var errs []error
	for _, a := range addrs {
		conn, err := d.dialHost(ctx, network, a)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (d *dialer) dialHost(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dialling %q: %w", addr, err)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		found, err := d.dns.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", host, err)
		}
		for _, a := range found {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				ips = append(ips, ip.Unmap())
			}
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("resolving %s: no addresses", host)
		}
	}
	var errs []error
	for _, ip := range ips {
		if !d.allowPrivate && !Public(ip) {
			errs = append(errs, fmt.Errorf("%s (%s): %w", host, ip, ErrPrivateAddress))
			continue
		}
		conn, err := d.net.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// Public reports whether ip may be reached without AllowPrivate: not
// loopback, private (RFC 1918, fc00::/7), link-local, unspecified or
// multicast.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast() &&
		!ip.IsLinkLocalMulticast() && !ip.IsInterfaceLocalMulticast() && !ip.IsMulticast() &&
		!ip.IsUnspecified()
}

// certPool is the system pool (which honours SSL_CERT_FILE) plus the PEM
// files in extra.
func certPool(extra []string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range extra {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading federation CA file %s: %w", f, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("federation CA file %s holds no PEM certificates", f)
		}
	}
	return pool, nil
}

const dialTimeout = 10 * time.Second
