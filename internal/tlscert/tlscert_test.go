package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"

	"github.com/myelin-chat/myelin/internal/config"
)

func TestServerTLSConfigIssuesFromCA(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		serverName, verifyAs string
		ip                   bool
	}{
		{"hs1.test", "hs1.test", false},
		{"hs1", "hs1", false},
		{"hs1.test:8448", "hs1.test", false},
		{"127.0.0.1:8448", "127.0.0.1", true},
		{"[::1]:8448", "::1", true},
	} {
		t.Run(tc.serverName, func(t *testing.T) {
			cfg, err := ServerTLSConfig(config.Federation{TLSCACert: certFile, TLSCAKey: keyFile}, tc.serverName)
			if err != nil {
				t.Fatal(err)
			}
			leaf := cfg.Certificates[0].Leaf
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: tc.verifyAs}); err != nil {
				t.Fatalf("certificate does not verify for %s: %v", tc.verifyAs, err)
			}
			if got := len(leaf.IPAddresses) == 1 && leaf.IPAddresses[0].Equal(net.ParseIP(tc.verifyAs)); got != tc.ip {
				t.Fatalf("IP SAN present = %v, want %v", got, tc.ip)
			}
		})
	}
}

func TestServerTLSConfigLoadsCertificate(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A CA written as a key pair is a valid certificate file pair too.
	certFile, keyFile, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerTLSConfig(config.Federation{TLSCert: certFile, TLSKey: keyFile}, "ignored.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("unexpected config: %d certificates", len(cfg.Certificates))
	}
	if _, err := ServerTLSConfig(config.Federation{}, "x.test"); err == nil {
		t.Fatal("no certificate and no CA: want an error")
	}
	if _, err := ServerTLSConfig(config.Federation{TLSCert: filepath.Join(dir, "missing"), TLSKey: keyFile}, "x.test"); err == nil {
		t.Fatal("missing certificate file: want an error")
	}
}
