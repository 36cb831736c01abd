package homeserver_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestFederationListenerWithRSACA: test suites hand out RSA CAs, in
// PKCS#1 or PKCS#8 form; the federation listener issues its certificate
// from either, and peers trusting the CA reach it. Its key document
// always has old_verify_keys, {} on a fresh server.
func TestFederationListenerWithRSACA(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "RSA test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range []struct {
		name  string
		block *pem.Block
	}{
		{"PKCS1", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}},
		{"PKCS8", &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}},
	} {
		t.Run(form.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
			if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(keyFile, pem.EncodeToMemory(form.block), 0o600); err != nil {
				t.Fatal(err)
			}
			name := "127.0.0.1:" + mxtest.FreePort(t)
			mxtest.Start(t, "sqlite", func(c *config.Config) {
				c.ServerName, c.Federation.Listen = name, name
				c.Federation.TLSCACert, c.Federation.TLSCAKey = certFile, keyFile
			})
			pool := x509.NewCertPool()
			pool.AddCert(caCert)
			cli := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
			resp, err := cli.Get("https://" + name + "/_matrix/key/v2/server")
			if err != nil {
				t.Fatalf("reaching the federation listener with the RSA CA as trust: %v", err)
			}
			defer resp.Body.Close()
			var doc map[string]json.RawMessage
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			if string(doc["old_verify_keys"]) != "{}" {
				t.Errorf("old_verify_keys = %s, want {}", doc["old_verify_keys"])
			}
		})
	}
}
