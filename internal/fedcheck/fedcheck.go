// Package fedcheck checks whether a server name federates, the way public
// federation testers do: server discovery (well-known, SRV, resolved
// addresses), then for every address the TLS certificate, the server
// version and the signing keys with their self-signatures.
//
// It is a diagnostic for operators (`myelin check-federation`) and sits
// outside the event flow. fedcheck imports fedclient (discovery) and keys
// (key response format, signature checks) from Myelin; it must not import
// homeserver or any API package.
package fedcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/keys"
)

// Options configures Check.
type Options struct {
	// DNS answers SRV and address lookups; nil uses net.DefaultResolver.
	DNS fedclient.DNS
	// RootCAs are the CAs trusted for certificates; nil uses the system
	// pool (which honours SSL_CERT_FILE).
	RootCAs *x509.CertPool
	// AllowPrivate accepts loopback and private addresses, which other
	// servers refuse to federate with; without it they fail the check.
	AllowPrivate bool
	// WellKnownPort replaces 443 for /.well-known requests (tests).
	WellKnownPort string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Report is the result of Check. FederationOK is the verdict; the rest
// explains it.
type Report struct {
	ServerName   string `json:"server_name"`
	FederationOK bool   `json:"federation_ok"`
	// Error is set when the name could not be resolved to any address.
	Error       string       `json:"error,omitempty"`
	WellKnown   WellKnown    `json:"well_known"`
	DNS         DNS          `json:"dns"`
	Connections []Connection `json:"connections"`
}

// WellKnown is the /.well-known/matrix/server step.
type WellKnown struct {
	Asked bool `json:"asked"`
	// Server is the delegated m.server.
	Server string `json:"m.server,omitempty"`
	Error  string `json:"error,omitempty"`
}

// DNS is the SRV step and the addresses found.
type DNS struct {
	SRV []SRVLookup `json:"srv,omitempty"`
	// Host is the Host header of requests; its host part is the name the
	// certificate must be valid for.
	Host string `json:"host"`
	// Targets are the host:port pairs discovery chose, in order.
	Targets []string `json:"targets"`
	// Addrs are the IP:port pairs they resolved to.
	Addrs []string `json:"addrs"`
	// Errors are failed address lookups.
	Errors []string `json:"errors,omitempty"`
}

// SRVLookup is one SRV query.
type SRVLookup struct {
	Name    string   `json:"name"`
	Records []string `json:"records,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Connection is what one address answered.
type Connection struct {
	Addr string `json:"addr"`
	OK   bool   `json:"ok"`
	// Problems lists every failed check in words; empty when OK.
	Problems []string    `json:"problems,omitempty"`
	TLS      *TLSInfo    `json:"tls,omitempty"`
	Version  *Version    `json:"version,omitempty"`
	Keys     *KeysReport `json:"keys,omitempty"`
}

// TLSInfo describes the TLS session and the certificate presented.
type TLSInfo struct {
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	// Verified reports that the chain leads to a trusted CA and is valid
	// for the expected name now; VerifyError says why not.
	Verified     bool     `json:"verified"`
	VerifyError  string   `json:"verify_error,omitempty"`
	ExpectedName string   `json:"expected_name"`
	Subject      string   `json:"subject"`
	Issuer       string   `json:"issuer"`
	DNSNames     []string `json:"dns_names,omitempty"`
	IPAddresses  []string `json:"ip_addresses,omitempty"`
	NotBefore    string   `json:"not_before"`
	NotAfter     string   `json:"not_after"`
}

// Version is GET /_matrix/federation/v1/version.
type Version struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// KeysReport is GET /_matrix/key/v2/server and its checks.
type KeysReport struct {
	ServerName   string `json:"server_name"`
	ValidUntilTS int64  `json:"valid_until_ts"`
	// ValidUntil is ValidUntilTS in RFC 3339.
	ValidUntil string `json:"valid_until"`
	// VerifyKeys maps key IDs to their public key and signature check.
	VerifyKeys    map[id.KeyID]KeyCheck `json:"verify_keys"`
	OldVerifyKeys []id.KeyID            `json:"old_verify_keys,omitempty"`
}

// KeyCheck is one verify key and whether the response is signed with it.
type KeyCheck struct {
	Key         id.SigningKey `json:"key"`
	SignatureOK bool          `json:"signature_ok"`
	Error       string        `json:"error,omitempty"`
}

const (
	requestTimeout = 15 * time.Second
	maxBody        = 1 << 20
)

// Check runs discovery for serverName and checks every address found.
func Check(ctx context.Context, serverName string, o Options) Report {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DNS == nil {
		o.DNS = net.DefaultResolver
	}
	rep := Report{ServerName: serverName, Connections: []Connection{}}
	disc, err := fedclient.Discover(ctx, serverName, fedclient.DiscoverOptions{
		DNS: o.DNS, RootCAs: o.RootCAs, AllowPrivate: o.AllowPrivate, WellKnownPort: o.WellKnownPort,
	})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.WellKnown = WellKnown{Asked: disc.WellKnownAsked, Server: disc.WellKnown}
	if disc.WellKnownErr != nil {
		rep.WellKnown.Error = disc.WellKnownErr.Error()
	}
	for _, l := range disc.SRV {
		s := SRVLookup{Name: l.Name}
		for _, r := range l.Records {
			s.Records = append(s.Records, fmt.Sprintf("%d %d %d %s", r.Priority, r.Weight, r.Port, r.Target))
		}
		if l.Err != nil {
			s.Error = l.Err.Error()
		}
		rep.DNS.SRV = append(rep.DNS.SRV, s)
	}
	rep.DNS.Host = disc.Target.Host
	rep.DNS.Targets = disc.Target.Addrs
	rep.DNS.Addrs = []string{}
	for _, target := range disc.Target.Addrs {
		addrs, err := lookup(ctx, o.DNS, target)
		if err != nil {
			rep.DNS.Errors = append(rep.DNS.Errors, err.Error())
		}
		rep.DNS.Addrs = append(rep.DNS.Addrs, addrs...)
	}
	if len(rep.DNS.Addrs) == 0 {
		rep.Error = fmt.Sprintf("%s resolved to no address", serverName)
		return rep
	}
	rep.FederationOK = true
	for _, addr := range rep.DNS.Addrs {
		c := checkAddr(ctx, serverName, disc.Target.Host, addr, o)
		rep.FederationOK = rep.FederationOK && c.OK
		rep.Connections = append(rep.Connections, c)
	}
	return rep
}

// lookup resolves the host of a host:port target to IP:port pairs.
func lookup(ctx context.Context, dns fedclient.DNS, target string) ([]string, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []string{target}, nil
	}
	ips, err := dns.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	var out []string
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.IP.String(), port))
	}
	return out, nil
}

// checkAddr connects to addr and runs the TLS, version and key checks.
func checkAddr(ctx context.Context, serverName, hostHeader, addr string, o Options) (c Connection) {
	c.Addr = addr
	fail := func(format string, args ...any) { c.Problems = append(c.Problems, fmt.Sprintf(format, args...)) }
	defer func() { c.OK = len(c.Problems) == 0 }()

	ipStr, _, _ := net.SplitHostPort(addr)
	if ip, err := netip.ParseAddr(ipStr); err == nil && !fedclient.Public(ip) && !o.AllowPrivate {
		fail("%s is not a public address; other servers refuse to connect to it", ipStr)
	}
	certName := hostOf(hostHeader)
	sni := certName
	if net.ParseIP(sni) != nil {
		sni = "" // no SNI for IP literals
	}
	dial := func(ctx context.Context) (*tls.Conn, error) {
		raw, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		// Verified separately below, so that a bad certificate is reported
		// in detail and the later checks still run.
		conn := tls.Client(raw, &tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		return conn, nil
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		fail("connecting: %v", err)
		return c
	}
	c.TLS = tlsInfo(conn.ConnectionState(), certName, o)
	conn.Close()
	if !c.TLS.Verified {
		fail("certificate: %s", c.TLS.VerifyError)
	}

	transport := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+hostHeader+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return body, nil
	}

	if body, err := get("/_matrix/federation/v1/version"); err != nil {
		fail("GET /_matrix/federation/v1/version: %v", err)
	} else {
		var v struct {
			Server Version `json:"server"`
		}
		if err := json.Unmarshal(body, &v); err != nil || v.Server.Name == "" {
			fail("GET /_matrix/federation/v1/version: no server name in %q", truncate(body))
		} else {
			c.Version = &v.Server
		}
	}

	if body, err := get("/_matrix/key/v2/server"); err != nil {
		fail("GET /_matrix/key/v2/server: %v", err)
	} else {
		var problems []string
		c.Keys, problems = checkKeys(body, serverName, o.Now())
		c.Problems = append(c.Problems, problems...)
	}
	return c
}

// tlsInfo describes the session and verifies the peer's chain for name.
func tlsInfo(st tls.ConnectionState, name string, o Options) *TLSInfo {
	info := &TLSInfo{
		Version:      tls.VersionName(st.Version),
		CipherSuite:  tls.CipherSuiteName(st.CipherSuite),
		ExpectedName: name,
	}
	if len(st.PeerCertificates) == 0 {
		info.VerifyError = "no certificate presented"
		return info
	}
	leaf := st.PeerCertificates[0]
	info.Subject, info.Issuer = leaf.Subject.String(), leaf.Issuer.String()
	info.DNSNames = leaf.DNSNames
	for _, ip := range leaf.IPAddresses {
		info.IPAddresses = append(info.IPAddresses, ip.String())
	}
	info.NotBefore, info.NotAfter = leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	roots := o.RootCAs
	if roots == nil {
		if sys, err := x509.SystemCertPool(); err == nil {
			roots = sys
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter, CurrentTime: o.Now()})
	if err != nil {
		info.VerifyError = err.Error()
	} else {
		info.Verified = true
	}
	return info
}

// checkKeys parses a key response and checks it the way a receiving server
// does: it names serverName, lists an ed25519 key, is signed by every key
// it lists, and valid_until_ts lies in the future.
func checkKeys(raw []byte, serverName string, now time.Time) (*KeysReport, []string) {
	var resp keys.ServerKeysResp
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, []string{fmt.Sprintf("key response is not valid: %v", err)}
	}
	var problems []string
	rep := &KeysReport{ServerName: resp.ServerName, ValidUntilTS: resp.ValidUntilTS,
		ValidUntil: time.UnixMilli(resp.ValidUntilTS).UTC().Format(time.RFC3339), VerifyKeys: map[id.KeyID]KeyCheck{}}
	if resp.ServerName != serverName {
		problems = append(problems, fmt.Sprintf("key response names server %q, want %q", resp.ServerName, serverName))
	}
	if !time.UnixMilli(resp.ValidUntilTS).After(now) {
		problems = append(problems, fmt.Sprintf("valid_until_ts %s is not in the future", rep.ValidUntil))
	}
	hasEd25519 := false
	for keyID, k := range resp.VerifyKeys {
		kc := KeyCheck{Key: k.Key}
		if strings.HasPrefix(string(keyID), "ed25519:") {
			hasEd25519 = true
		}
		if err := keys.VerifyJSON(resp.ServerName, keyID, k.Key, raw); err != nil {
			kc.Error = err.Error()
			problems = append(problems, fmt.Sprintf("key %s: %v", keyID, err))
		} else {
			kc.SignatureOK = true
		}
		rep.VerifyKeys[keyID] = kc
	}
	if !hasEd25519 {
		problems = append(problems, "key response lists no ed25519 verify key")
	}
	for keyID := range resp.OldVerifyKeys {
		rep.OldVerifyKeys = append(rep.OldVerifyKeys, keyID)
	}
	slices.Sort(rep.OldVerifyKeys)
	return rep, problems
}

// hostOf returns the host part of a Host header value, without brackets.
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
