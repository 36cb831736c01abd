package fedclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Well-known caching bounds. The spec recommends respecting Cache-Control,
// 24 hours without headers, at most 48 hours, and caching errors for up to
// an hour with exponential backoff.
const (
	wellKnownDefault    = 24 * time.Hour
	wellKnownMax        = 48 * time.Hour
	wellKnownMin        = 5 * time.Minute
	wellKnownErrorFirst = 2 * time.Minute
	wellKnownErrorMax   = time.Hour
	wellKnownMaxBytes   = 64 << 10
	// targetCacheMax bounds how long a resolution (SRV answers included)
	// is reused without asking DNS again.
	targetCacheMax = time.Hour
	// maxCachedNames bounds each cache; past it the cache starts over.
	maxCachedNames = 10000
	defaultPort    = "8448"
)

// DNS is the part of *net.Resolver discovery uses; tests substitute it.
type DNS interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Target is where requests for a server name go.
type Target struct {
	// Addrs are host:port pairs to try in order; a host that is not an IP
	// literal is resolved (AAAA/A) when dialling.
	Addrs []string
	// Host is the Host header. Its host part is also the name the server's
	// certificate must be valid for, and the TLS SNI unless it is an IP.
	Host string
}

type wellKnownEntry struct {
	delegated string // empty after a failure
	expires   time.Time
	failures  int
}

type targetEntry struct {
	target  Target
	expires time.Time
}

// resolver implements server discovery ("Resolving server names" in the
// server-server API) with caches for /.well-known answers and results.
type resolver struct {
	dns       DNS
	wellKnown *http.Client
	testHosts map[string]string
	now       func() time.Time
	// wellKnownPort overrides 443 for /.well-known requests, for tests.
	wellKnownPort string

	mu      sync.Mutex
	known   map[string]wellKnownEntry // hostname → answer
	targets map[string]targetEntry    // server name → target
}

func newResolver(dns DNS, wellKnown *http.Client, testHosts map[string]string, now func() time.Time) *resolver {
	return &resolver{
		dns: dns, wellKnown: wellKnown, testHosts: testHosts, now: now,
		known: map[string]wellKnownEntry{}, targets: map[string]targetEntry{},
	}
}

// ErrInvalidServerName is wrapped by the error of a request to a name that
// is not a server name of the spec's grammar (a non-numeric port, say):
// the caller's input is wrong, no server was asked.
var ErrInvalidServerName = errors.New("invalid server name")

// ValidServerName reports whether name is a server name of the spec's
// grammar (appendix, "Server name"), with an error wrapping
// ErrInvalidServerName when it is not.
func ValidServerName(name string) error {
	if _, _, err := splitServerName(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidServerName, err)
	}
	return nil
}

// splitServerName splits a server name (or delegated server name) into host
// and optional port, validating both. IPv6 literals keep no brackets.
func splitServerName(name string) (host, port string, err error) {
	if name == "" {
		return "", "", errors.New("empty server name")
	}
	host = name
	if strings.HasPrefix(name, "[") {
		end := strings.Index(name, "]")
		if end < 0 {
			return "", "", fmt.Errorf("server name %q: unterminated IPv6 literal", name)
		}
		host, port = name[1:end], name[end+1:]
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return "", "", fmt.Errorf("server name %q: bad IPv6 literal", name)
		}
		if port != "" {
			if port[0] != ':' {
				return "", "", fmt.Errorf("server name %q: junk after IPv6 literal", name)
			}
			port = port[1:]
		} else {
			return host, "", nil
		}
	} else if i := strings.LastIndexByte(name, ':'); i >= 0 {
		host, port = name[:i], name[i+1:]
	}
	if port != "" || strings.HasSuffix(name, ":") {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return "", "", fmt.Errorf("server name %q: bad port", name)
		}
	}
	if net.ParseIP(host) == nil && !validHostname(host) {
		return "", "", fmt.Errorf("server name %q: bad hostname", name)
	}
	return host, port, nil
}

// validHostname follows the dns-name grammar of the appendix: 1–255
// characters of letters, digits, '-' and '.'.
func validHostname(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Resolve returns the target of serverName, from the cache when fresh.
func (r *resolver) Resolve(ctx context.Context, serverName string) (Target, error) {
	if addr, ok := r.testHosts[serverName]; ok {
		return Target{Addrs: []string{addr}, Host: serverName}, nil
	}
	r.mu.Lock()
	e, ok := r.targets[serverName]
	r.mu.Unlock()
	if ok && r.now().Before(e.expires) {
		return e.target, nil
	}
	t, expires, err := r.resolve(ctx, serverName)
	if err != nil {
		return Target{}, err
	}
	if limit := r.now().Add(targetCacheMax); expires.After(limit) {
		expires = limit
	}
	r.mu.Lock()
	if len(r.targets) >= maxCachedNames {
		clear(r.targets)
	}
	r.targets[serverName] = targetEntry{target: t, expires: expires}
	r.mu.Unlock()
	return t, nil
}

// resolve runs the spec's steps; the comments carry its numbering.
func (r *resolver) resolve(ctx context.Context, serverName string) (Target, time.Time, error) {
	host, port, err := splitServerName(serverName)
	if err != nil {
		return Target{}, time.Time{}, fmt.Errorf("%w: %w", ErrInvalidServerName, err)
	}
	forever := r.now().Add(targetCacheMax)
	// 1. An IP literal: that address, the given port or 8448; Host is the
	// server name.
	if net.ParseIP(host) != nil {
		return Target{Addrs: []string{net.JoinHostPort(host, orDefault(port))}, Host: serverName}, forever, nil
	}
	// 2. A hostname with an explicit port: A/AAAA of the hostname; Host is
	// the server name.
	if port != "" {
		return Target{Addrs: []string{net.JoinHostPort(host, port)}, Host: serverName}, forever, nil
	}
	// 3. /.well-known/matrix/server.
	delegated, expires := r.lookupWellKnown(ctx, host)
	if delegated != "" {
		dhost, dport, _ := splitServerName(delegated) // validated when cached
		switch {
		case net.ParseIP(dhost) != nil:
			// 3.1 A delegated IP literal; Host is the delegated name as given.
			return Target{Addrs: []string{net.JoinHostPort(dhost, orDefault(dport))}, Host: delegated}, expires, nil
		case dport != "":
			// 3.2 A delegated hostname with a port.
			return Target{Addrs: []string{net.JoinHostPort(dhost, dport)}, Host: delegated}, expires, nil
		}
		// 3.3 / 3.4 SRV records of the delegated hostname.
		if addrs := r.lookupSRV(ctx, dhost); len(addrs) > 0 {
			return Target{Addrs: addrs, Host: dhost}, expires, nil
		}
		// 3.5 The delegated hostname on 8448.
		return Target{Addrs: []string{net.JoinHostPort(dhost, defaultPort)}, Host: dhost}, expires, nil
	}
	// 4. / 5. SRV records of the hostname.
	if addrs := r.lookupSRV(ctx, host); len(addrs) > 0 {
		return Target{Addrs: addrs, Host: host}, expires, nil
	}
	// 6. The hostname on 8448.
	return Target{Addrs: []string{net.JoinHostPort(host, defaultPort)}, Host: host}, expires, nil
}

func orDefault(port string) string {
	if port == "" {
		return defaultPort
	}
	return port
}

// lookupSRV tries _matrix-fed._tcp, then the deprecated _matrix._tcp.
func (r *resolver) lookupSRV(ctx context.Context, name string) []string {
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, recs, err := r.dns.LookupSRV(ctx, service, "tcp", name)
		if err != nil || len(recs) == 0 {
			continue
		}
		var addrs []string
		for _, rec := range recs {
			target := strings.TrimSuffix(rec.Target, ".")
			if target == "" { // "." means the service is not offered
				continue
			}
			addrs = append(addrs, net.JoinHostPort(target, strconv.Itoa(int(rec.Port))))
		}
		if len(addrs) > 0 {
			return addrs
		}
	}
	return nil
}

// lookupWellKnown returns the delegated server name of host ("" when there
// is none or the request failed) and until when that answer holds.
func (r *resolver) lookupWellKnown(ctx context.Context, host string) (string, time.Time) {
	now := r.now()
	r.mu.Lock()
	e, ok := r.known[host]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.delegated, e.expires
	}
	delegated, ttl, err := r.fetchWellKnown(ctx, host)
	if err != nil {
		if ctx.Err() != nil {
			return "", now // not the server's fault: do not cache
		}
		e.failures++
		backoff := wellKnownErrorFirst << min(e.failures-1, 10)
		e = wellKnownEntry{failures: e.failures, expires: now.Add(min(backoff, wellKnownErrorMax))}
	} else {
		e = wellKnownEntry{delegated: delegated, expires: now.Add(ttl)}
	}
	r.mu.Lock()
	if len(r.known) >= maxCachedNames {
		clear(r.known)
	}
	r.known[host] = e
	r.mu.Unlock()
	return e.delegated, e.expires
}

func (r *resolver) fetchWellKnown(ctx context.Context, host string) (string, time.Duration, error) {
	authority := host
	if r.wellKnownPort != "" {
		authority = net.JoinHostPort(host, r.wellKnownPort)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+authority+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", 0, fmt.Errorf("well-known of %s: %w", host, err)
	}
	resp, err := r.wellKnown.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("well-known of %s: %w", host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, wellKnownMaxBytes+1))
	if err != nil {
		return "", 0, fmt.Errorf("well-known of %s: %w", host, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("well-known of %s: HTTP %d", host, resp.StatusCode)
	}
	if len(body) > wellKnownMaxBytes {
		return "", 0, fmt.Errorf("well-known of %s: response too large", host)
	}
	var wk struct {
		Server string `json:"m.server"`
	}
	if err := json.Unmarshal(body, &wk); err != nil {
		return "", 0, fmt.Errorf("well-known of %s: %w", host, err)
	}
	if _, _, err := splitServerName(wk.Server); err != nil {
		return "", 0, fmt.Errorf("well-known of %s: m.server: %w", host, err)
	}
	return wk.Server, cacheTTL(resp.Header, r.now()), nil
}

// cacheTTL reads Cache-Control max-age (or no-store/no-cache), then
// Expires, defaulting to 24 hours, bounded to [5 minutes, 48 hours].
func cacheTTL(h http.Header, now time.Time) time.Duration {
	ttl := wellKnownDefault
	found := false
	for _, directive := range strings.Split(h.Get("Cache-Control"), ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(strings.ToLower(directive)), "=")
		switch name {
		case "no-store", "no-cache":
			ttl, found = 0, true
		case "max-age":
			if n, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64); err == nil && !found {
				n = min(max(n, 0), int64(wellKnownMax/time.Second)) // no overflow
				ttl, found = time.Duration(n)*time.Second, true
			}
		}
	}
	if !found {
		if exp, err := http.ParseTime(h.Get("Expires")); err == nil {
			ttl = exp.Sub(now)
		}
	}
	return min(max(ttl, wellKnownMin), wellKnownMax)
}
