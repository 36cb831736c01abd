package fedcheck

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"
)

// WriteText writes the report for a person to read.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	verdict := "OK"
	if !r.FederationOK {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "Federation check of %s: %s\n", r.ServerName, verdict)
	if r.Error != "" {
		fmt.Fprintf(&b, "  error: %s\n", r.Error)
	}
	b.WriteString("\nDiscovery\n")
	switch {
	case !r.WellKnown.Asked:
		b.WriteString("  well-known: not asked (IP literal or explicit port)\n")
	case r.WellKnown.Server != "":
		fmt.Fprintf(&b, "  well-known: m.server = %s\n", r.WellKnown.Server)
	default:
		fmt.Fprintf(&b, "  well-known: none (%s)\n", r.WellKnown.Error)
	}
	for _, s := range r.DNS.SRV {
		switch {
		case len(s.Records) > 0:
			fmt.Fprintf(&b, "  SRV %s: %s\n", s.Name, strings.Join(s.Records, ", "))
		case s.Error != "":
			fmt.Fprintf(&b, "  SRV %s: none (%s)\n", s.Name, s.Error)
		default:
			fmt.Fprintf(&b, "  SRV %s: none\n", s.Name)
		}
	}
	if r.DNS.Host != "" {
		fmt.Fprintf(&b, "  Host header and certificate name: %s\n", r.DNS.Host)
		fmt.Fprintf(&b, "  targets: %s\n", strings.Join(r.DNS.Targets, ", "))
		fmt.Fprintf(&b, "  addresses: %s\n", strings.Join(r.DNS.Addrs, ", "))
	}
	for _, e := range r.DNS.Errors {
		fmt.Fprintf(&b, "  lookup failed: %s\n", e)
	}
	for _, c := range r.Connections {
		status := "OK"
		if !c.OK {
			status = "FAILED"
		}
		fmt.Fprintf(&b, "\nConnection to %s: %s\n", c.Addr, status)
		if t := c.TLS; t != nil {
			fmt.Fprintf(&b, "  TLS: %s, %s\n", t.Version, t.CipherSuite)
			names := append(slices.Clone(t.DNSNames), t.IPAddresses...)
			fmt.Fprintf(&b, "  certificate: %s, issued by %s, names [%s], valid %s to %s\n",
				t.Subject, t.Issuer, strings.Join(names, ", "), t.NotBefore, t.NotAfter)
			if t.Verified {
				fmt.Fprintf(&b, "  certificate verified for %s\n", t.ExpectedName)
			}
		}
		if c.Version != nil {
			fmt.Fprintf(&b, "  server: %s %s\n", c.Version.Name, c.Version.Version)
		}
		if k := c.Keys; k != nil {
			fmt.Fprintf(&b, "  keys of %s, valid until %s\n", k.ServerName, k.ValidUntil)
			ids := make([]id.KeyID, 0, len(k.VerifyKeys))
			for keyID := range k.VerifyKeys {
				ids = append(ids, keyID)
			}
			slices.Sort(ids)
			for _, keyID := range ids {
				kc := k.VerifyKeys[keyID]
				sig := "signature OK"
				if !kc.SignatureOK {
					sig = "signature INVALID"
				}
				fmt.Fprintf(&b, "    %s %s: %s\n", keyID, kc.Key, sig)
			}
			if len(k.OldVerifyKeys) > 0 {
				fmt.Fprintf(&b, "    old keys: %s\n", strings.Join(keyIDs(k.OldVerifyKeys), ", "))
			}
		}
		for _, p := range c.Problems {
			fmt.Fprintf(&b, "  problem: %s\n", p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func keyIDs(ids []id.KeyID) []string {
	out := make([]string, len(ids))
	for i, k := range ids {
		out[i] = string(k)
	}
	return out
}
