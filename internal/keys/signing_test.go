package keys

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"
)

func TestGenerateThenLoadKeepsIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	k1, err := LoadOrGenerate(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrGenerate(path)
	if err != nil {
		t.Fatal(err)
	}
	if k1.ID != k2.ID || !k1.Priv.Equal(k2.Priv) {
		t.Fatalf("reloaded key differs: %s vs %s", k1.ID, k2.ID)
	}
}

func TestParseSynapseKeyFile(t *testing.T) {
	// A Synapse key file: "ed25519 <version> <unpadded base64 seed>".
	k, err := Parse("ed25519 a_AbCd AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n")
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	if k.ID != "ed25519:a_AbCd" || !k.Priv.Equal(ed25519.NewKeyFromSeed(seed)) {
		t.Fatalf("parsed %s with the wrong key", k.ID)
	}
	for _, bad := range []string{"", "rsa a_x AAAA", "ed25519 a_x notbase64!!", "ed25519 a_x AAAA"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted a bad key file", bad)
		}
	}
}
