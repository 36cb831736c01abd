// Package keys owns server signing keys: our ed25519 key (loaded from a
// Synapse-format key file, or generated on first start) and the Ring, which
// answers any server's verify keys, ours included, from memory, the
// server_keys table, the server's key endpoint or trusted notaries.
//
// Event signature checks (room) and X-Matrix request authentication
// (federationapi) ask the Ring. keys imports storage and config from Myelin;
// it reaches other servers only through the Fetcher interface, which
// fedclient implements, so it must not import fedclient.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"maunium.net/go/mautrix/id"
)

// SigningKey is one of our ed25519 keys with its key ID (ed25519:a_xyz).
type SigningKey struct {
	ID   id.KeyID
	Priv ed25519.PrivateKey
}

// Public returns the unpadded base64 public key, as served in key responses.
func (k SigningKey) Public() id.SigningKey {
	return id.SigningKey(base64.RawStdEncoding.EncodeToString(k.Priv.Public().(ed25519.PublicKey)))
}

// LoadOrGenerate reads the key file at path in Synapse's format
// ("ed25519 <version> <base64 seed>", one key per line, first one used), or
// writes a new key there when the file does not exist.
func LoadOrGenerate(path string) (SigningKey, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return generate(path)
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("reading signing key %s: %w", path, err)
	}
	return Parse(string(raw))
}

// Parse reads the first key of a Synapse-format signing key file.
func Parse(s string) (SigningKey, error) {
	for _, line := range strings.Split(s, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 || fields[0] != "ed25519" {
			return SigningKey{}, errors.New(`signing key file: want "ed25519 <key version> <base64 seed>"`)
		}
		seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fields[2], "="))
		if err != nil || len(seed) != ed25519.SeedSize {
			return SigningKey{}, errors.New("signing key file: the seed is not 32 bytes of base64")
		}
		return SigningKey{ID: id.KeyID("ed25519:" + fields[1]), Priv: ed25519.NewKeyFromSeed(seed)}, nil
	}
	return SigningKey{}, errors.New("signing key file is empty")
}

func generate(path string) (SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("generating signing key: %w", err)
	}
	var v [3]byte
	_, _ = rand.Read(v[:])
	version := "a_" + base64.RawURLEncoding.EncodeToString(v[:])
	line := fmt.Sprintf("ed25519 %s %s\n", version, base64.RawStdEncoding.EncodeToString(priv.Seed()))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return SigningKey{}, fmt.Errorf("creating key directory: %w", err)
	}
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		return SigningKey{}, fmt.Errorf("writing signing key %s: %w", path, err)
	}
	return SigningKey{ID: id.KeyID("ed25519:" + version), Priv: priv}, nil
}
