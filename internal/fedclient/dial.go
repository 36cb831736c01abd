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

	"github.com/myelin-chat/myelin/internal/netguard"
)

// ErrPrivateAddress is returned (wrapped) when a federation connection
// would go to a non-public address (see netguard) and private addresses are
// not allowed. It is netguard.ErrRefused.
var ErrPrivateAddress = netguard.ErrRefused

// dialer connects to federation targets. It resolves names itself and
// skips resolved IPs the guard refuses; the guard checks again in the
// dialer's Control hook on the address actually connected, so a DNS answer
// that changes between check and connect (rebinding) cannot slip through.
type dialer struct {
	dns   DNS
	net   net.Dialer
	guard *netguard.Guard
}

func newDialer(dns DNS, allowPrivate bool) *dialer {
	g := netguard.New(nil, nil)
	if allowPrivate {
		g = netguard.AllowAll()
	}
	return &dialer{dns: dns, net: *g.Dialer(dialTimeout), guard: g}
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
		if err := d.guard.Check(ip); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", host, err))
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

// Public reports whether ip may be reached without AllowPrivate (see
// netguard.Public for the ranges refused).
func Public(ip netip.Addr) bool { return netguard.Public(ip) }

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
