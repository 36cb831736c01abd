package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"
)

// ServerKeysResp is a server's key response, as served at
// GET /_matrix/key/v2/server and inside notary answers. old_verify_keys
// is always present, {} when there are none: some servers and test suites
// require the field.
type ServerKeysResp struct {
	ServerName    string                         `json:"server_name"`
	VerifyKeys    map[id.KeyID]VerifyKeyJSON     `json:"verify_keys"`
	OldVerifyKeys map[id.KeyID]OldVerifyKeyJSON  `json:"old_verify_keys"`
	Signatures    map[string]map[id.KeyID]string `json:"signatures,omitempty"`
	// ValidUntilTS is in milliseconds since the epoch.
	ValidUntilTS int64 `json:"valid_until_ts"`
}

// VerifyKeyJSON is one entry of verify_keys.
type VerifyKeyJSON struct {
	Key id.SigningKey `json:"key"`
}

// OldVerifyKeyJSON is one entry of old_verify_keys.
type OldVerifyKeyJSON struct {
	Key       id.SigningKey `json:"key"`
	ExpiredTS int64         `json:"expired_ts"`
}

// QueryReq is the body of POST /_matrix/key/v2/query: server name → key
// ID → criteria. An empty inner map asks for every key of the server.
type QueryReq struct {
	ServerKeys map[string]map[id.KeyID]QueryCriteria `json:"server_keys"`
}

// QueryCriteria bounds the validity of keys a notary returns.
type QueryCriteria struct {
	MinimumValidUntilTS int64 `json:"minimum_valid_until_ts,omitempty"`
}

// QueryResp is a notary's answer: signed key responses, each also signed by
// the notary. Kept raw because the signatures cover the exact content.
type QueryResp struct {
	ServerKeys []json.RawMessage `json:"server_keys"`
}

// SignJSON returns obj with a signature by k, under serverName, added to
// its "signatures" (existing signatures are kept). The signature covers the
// canonical JSON of obj without "signatures" and "unsigned", per the
// appendix "Signing JSON".
func (k SigningKey) SignJSON(serverName string, obj json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, fmt.Errorf("signing JSON: not an object: %w", err)
	}
	sigs := map[string]map[string]string{}
	if raw, ok := m["signatures"]; ok {
		if err := json.Unmarshal(raw, &sigs); err != nil {
			return nil, fmt.Errorf("signing JSON: malformed signatures: %w", err)
		}
	}
	unsigned, hasUnsigned := m["unsigned"]
	delete(m, "signatures")
	delete(m, "unsigned")
	canonical, err := canonicaljson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("signing JSON: canonicalising: %w", err)
	}
	if sigs[serverName] == nil {
		sigs[serverName] = map[string]string{}
	}
	sigs[serverName][string(k.ID)] = base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.Priv, canonical))
	if m["signatures"], err = json.Marshal(sigs); err != nil {
		return nil, fmt.Errorf("signing JSON: %w", err)
	}
	if hasUnsigned {
		m["unsigned"] = unsigned
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("signing JSON: %w", err)
	}
	return out, nil
}

// VerifyJSON checks that obj carries a valid signature of server under
// keyID made with key.
func VerifyJSON(server string, keyID id.KeyID, key id.SigningKey, obj json.RawMessage) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := signutil.VerifyJSON(server, keyID, key, obj); err != nil {
		return fmt.Errorf("signature of %s by %s: %w", server, keyID, err)
	}
	return nil
}

func checkKey(key id.SigningKey) error {
	b, err := base64.RawStdEncoding.DecodeString(string(key))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return errors.New("verify key is not 32 bytes of unpadded base64")
	}
	return nil
}
