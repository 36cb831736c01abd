package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// crossSigningKey is the part of a cross-signing key the server checks.
type crossSigningKey struct {
	UserID id.UserID         `json:"user_id"`
	Usage  []string          `json:"usage"`
	Keys   map[string]string `json:"keys"`
}

// CrossSigningTypes are the cross-signing key types, as named in
// /keys/device_signing/upload (without the _key suffix) and in storage.
var CrossSigningTypes = []string{"master", "self_signing", "user_signing"}

// crossSigningKeys returns the user's cross-signing keys by type.
func (s *Service) crossSigningKeys(ctx context.Context, user id.UserID) (map[string]json.RawMessage, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key_type, key_json FROM e2ee_cross_signing_keys WHERE user_id = $1`, user.String())
	if err != nil {
		return nil, fmt.Errorf("loading cross-signing keys of %s: %w", user, err)
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var typ, raw string
		if err := rows.Scan(&typ, &raw); err != nil {
			return nil, err
		}
		out[typ] = json.RawMessage(raw)
	}
	return out, rows.Err()
}

// CrossSigningNeedsAuth reports whether uploading keys (by type) needs
// User-Interactive Auth: it does unless the user has no master key yet, or
// every key uploaded equals the one stored (cross_signing.yaml).
func (s *Service) CrossSigningNeedsAuth(ctx context.Context, user id.UserID, keys map[string]json.RawMessage) (bool, error) {
	have, err := s.crossSigningKeys(ctx, user)
	if err != nil {
		return false, err
	}
	if _, ok := have["master"]; !ok {
		return false, nil
	}
	for typ, raw := range keys {
		if !jsonEqual(have[typ], raw) {
			return true, nil
		}
	}
	return false, nil
}

// UploadCrossSigning stores the user's cross-signing keys (by type: master,
// self_signing, user_signing). A self-signing or user-signing key needs a
// master key, uploaded now or before.
func (s *Service) UploadCrossSigning(ctx context.Context, user id.UserID, keys map[string]json.RawMessage) error {
	for typ, raw := range keys {
		var k crossSigningKey
		if err := json.Unmarshal(raw, &k); err != nil {
			return mxerr.BadJSON.With("%s_key: %v", typ, err)
		}
		if k.UserID != user {
			return mxerr.InvalidParam.With("%s_key must belong to the calling user", typ)
		}
		if len(k.Keys) != 1 {
			return mxerr.InvalidParam.With("%s_key must hold exactly one key", typ)
		}
		usage := false
		for _, u := range k.Usage {
			usage = usage || u == typ
		}
		if !usage {
			return mxerr.InvalidParam.With("%s_key must have usage %q", typ, typ)
		}
	}
	have, err := s.crossSigningKeys(ctx, user)
	if err != nil {
		return err
	}
	if _, ok := keys["master"]; !ok && have["master"] == nil && len(keys) > 0 {
		return mxerr.MissingParam.With("a master key is required")
	}
	changed := false
	var out outbox
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		out = outbox{}
		for _, typ := range CrossSigningTypes {
			raw, ok := keys[typ]
			if !ok || jsonEqual(have[typ], raw) {
				continue
			}
			changed = true
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
				ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json`, user.String(), typ, string(raw)); err != nil {
				return err
			}
		}
		if !changed {
			return nil
		}
		return s.keysChanged(ctx, tx, &out, user, nil, true)
	})
	if err != nil {
		return fmt.Errorf("uploading cross-signing keys of %s: %w", user, err)
	}
	s.send(ctx, &out)
	return nil
}

// targetSignatures maps a signed object (a device ID, or a cross-signing
// public key) to its uploaded signatures: signer, key ID, signature.
type targetSignatures map[string]map[id.UserID]map[string]string

// signatures loads the signatures uploaded for the user's keys.
func (s *Service) signatures(ctx context.Context, user id.UserID) (targetSignatures, error) {
	return signaturesIn(ctx, s.db, user)
}

// signaturesIn loads the signatures uploaded for the user's keys through q
// (a write transaction sees its own uploads).
func signaturesIn(ctx context.Context, q queryer, user id.UserID) (targetSignatures, error) {
	rows, err := q.QueryContext(ctx, `SELECT target_key, signer_user, signer_key_id, signature FROM e2ee_signatures
		WHERE target_user = $1`, user.String())
	if err != nil {
		return nil, fmt.Errorf("loading signatures of %s's keys: %w", user, err)
	}
	defer rows.Close()
	out := targetSignatures{}
	for rows.Next() {
		var target, signer, keyID, sig string
		if err := rows.Scan(&target, &signer, &keyID, &sig); err != nil {
			return nil, err
		}
		if out[target] == nil {
			out[target] = map[id.UserID]map[string]string{}
		}
		if out[target][id.UserID(signer)] == nil {
			out[target][id.UserID(signer)] = map[string]string{}
		}
		out[target][id.UserID(signer)][keyID] = sig
	}
	return out, rows.Err()
}

// withSignatures merges sigs into the signatures of a signed object, for
// the signers visible allows (all when nil).
func withSignatures(raw json.RawMessage, sigs map[id.UserID]map[string]string, visible func(id.UserID) bool) json.RawMessage {
	if len(sigs) == 0 {
		return raw
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	all := map[id.UserID]map[string]string{}
	_ = json.Unmarshal(m["signatures"], &all)
	for signer, byKey := range sigs {
		if visible != nil && !visible(signer) {
			continue
		}
		if all[signer] == nil {
			all[signer] = map[string]string{}
		}
		for k, v := range byKey {
			all[signer][k] = v
		}
	}
	m["signatures"], _ = json.Marshal(all)
	out, _ := json.Marshal(m)
	return out
}

// publicKeyOf returns the public key of a cross-signing key object.
func publicKeyOf(raw json.RawMessage) string {
	var k crossSigningKey
	_ = json.Unmarshal(raw, &k)
	for _, v := range k.Keys {
		return v
	}
	return ""
}

// UploadSignatures stores the signatures that signer made of keys
// (POST /keys/signatures/upload): for each user, objects keyed by device ID
// or by cross-signing public key. Only the signer's own signatures of
// objects the server knows are kept; the rest are reported in failures.
func (s *Service) UploadSignatures(ctx context.Context, signer id.UserID, objs map[id.UserID]map[string]json.RawMessage) (map[id.UserID]map[string]any, error) {
	failures := map[id.UserID]map[string]any{}
	fail := func(user id.UserID, key string, e *mxerr.Error) {
		if failures[user] == nil {
			failures[user] = map[string]any{}
		}
		failures[user][key] = e
	}
	type sig struct {
		target id.UserID
		key    string
		keyID  string
		value  string
		device bool // key is a device ID, not a cross-signing public key
	}
	var sigs []sig
	signerKeys, err := s.signingKeysOf(ctx, signer)
	if err != nil {
		return nil, err
	}
	for user, byKey := range objs {
		var known map[string]bool
		var remoteMaster json.RawMessage
		if s.local(user) {
			if known, err = s.knownKeys(ctx, user); err != nil {
				return nil, err
			}
		} else {
			// Of a remote user only the master key can be signed (by the
			// signer's user-signing key, when verifying them). The
			// signature stays on this server, shown to the signer alone.
			resp, err := s.Query(ctx, signer, map[id.UserID][]id.DeviceID{user: nil})
			if err != nil {
				return nil, err
			}
			known = map[string]bool{}
			if remoteMaster = resp.MasterKeys[user]; remoteMaster != nil {
				known[publicKeyOf(remoteMaster)] = false
			}
		}
		for key, raw := range byKey {
			var obj struct {
				Signatures map[id.UserID]map[string]string `json:"signatures"`
			}
			if json.Unmarshal(raw, &obj) != nil || len(obj.Signatures[signer]) == 0 {
				fail(user, key, mxerr.InvalidSignature.WithStatus(400).With("no signature by %s", signer))
				continue
			}
			isDevice, ok := known[key]
			if !ok {
				fail(user, key, mxerr.NotFound.WithStatus(400).With("unknown key %s", key))
				continue
			}
			stored := remoteMaster
			if s.local(user) {
				if stored, err = s.storedKeyJSON(ctx, user, key, isDevice); err != nil {
					return nil, err
				}
			}
			if !sameKeys(stored, raw) {
				fail(user, key, mxerr.InvalidSignature.WithStatus(400).With("the signed object is not the key %s as uploaded", key))
				continue
			}
			for keyID, v := range obj.Signatures[signer] {
				pub, ok := signerKeys[keyID]
				if !ok {
					fail(user, key, mxerr.InvalidSignature.WithStatus(400).With("unknown signing key %s", keyID))
					continue
				}
				if err := signutil.VerifyJSON(signer.String(), id.KeyID(keyID), id.SigningKey(pub), json.RawMessage(raw)); err != nil {
					fail(user, key, mxerr.InvalidSignature.WithStatus(400).With("signature %s does not verify", keyID))
					continue
				}
				sigs = append(sigs, sig{user, key, keyID, v, isDevice})
			}
		}
	}
	if len(sigs) == 0 {
		return failures, nil
	}
	var out outbox
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		out = outbox{}
		type change struct {
			devices      []id.DeviceID
			crossSigning bool
		}
		changed := map[id.UserID]*change{}
		for _, g := range sigs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_signatures (target_user, target_key, signer_user, signer_key_id, signature)
				VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_user, target_key, signer_user, signer_key_id)
				DO UPDATE SET signature = excluded.signature`, g.target.String(), g.key, signer.String(), g.keyID, g.value); err != nil {
				return err
			}
			if !s.local(g.target) {
				continue // nothing to tell other servers
			}
			c := changed[g.target]
			if c == nil {
				c = &change{}
				changed[g.target] = c
			}
			if !g.device {
				c.crossSigning = true
			} else if !slices.Contains(c.devices, id.DeviceID(g.key)) {
				c.devices = append(c.devices, id.DeviceID(g.key))
			}
		}
		// A signed device goes to other servers as an m.device_list_update
		// carrying its keys with the new signature, a signed cross-signing
		// key as an m.signing_key_update.
		for user, c := range changed {
			if err := s.keysChanged(ctx, tx, &out, user, c.devices, c.crossSigning); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storing signatures by %s: %w", signer, err)
	}
	s.send(ctx, &out)
	return failures, nil
}

// knownKeys returns the device IDs with keys (true) and the cross-signing
// public keys (false) of a user.
func (s *Service) knownKeys(ctx context.Context, user id.UserID) (map[string]bool, error) {
	out := map[string]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id FROM e2ee_device_keys WHERE user_id = $1`, user.String())
	if err != nil {
		return nil, fmt.Errorf("listing keys of %s: %w", user, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out[d] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	cs, err := s.crossSigningKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	for _, raw := range cs {
		out[publicKeyOf(raw)] = false
	}
	return out, nil
}

// signingKeysOf maps the key IDs user may sign with (ed25519:DEVICE for
// each device, ed25519:<public key> for each cross-signing key) to their
// public keys.
func (s *Service) signingKeysOf(ctx context.Context, user id.UserID) (map[string]string, error) {
	out := map[string]string{}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id, key_json FROM e2ee_device_keys WHERE user_id = $1`, user.String())
	if err != nil {
		return nil, fmt.Errorf("loading device keys of %s: %w", user, err)
	}
	defer rows.Close()
	for rows.Next() {
		var dev, raw string
		if err := rows.Scan(&dev, &raw); err != nil {
			return nil, err
		}
		var k struct {
			Keys map[string]string `json:"keys"`
		}
		if json.Unmarshal([]byte(raw), &k) == nil {
			if pub := k.Keys["ed25519:"+dev]; pub != "" {
				out["ed25519:"+dev] = pub
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	cs, err := s.crossSigningKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	for _, raw := range cs {
		if pub := publicKeyOf(raw); pub != "" {
			out["ed25519:"+pub] = pub
		}
	}
	return out, nil
}

// storedKeyJSON returns the stored form of a device key or cross-signing
// key of user.
func (s *Service) storedKeyJSON(ctx context.Context, user id.UserID, key string, isDevice bool) (json.RawMessage, error) {
	if isDevice {
		var raw string
		err := s.db.QueryRowContext(ctx, `SELECT key_json FROM e2ee_device_keys WHERE user_id = $1 AND device_id = $2`, user.String(), key).Scan(&raw)
		if err != nil {
			return nil, fmt.Errorf("loading device key %s of %s: %w", key, user, err)
		}
		return json.RawMessage(raw), nil
	}
	cs, err := s.crossSigningKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	for _, raw := range cs {
		if publicKeyOf(raw) == key {
			return raw, nil
		}
	}
	return nil, nil
}

// sameKeys reports whether a signed object carries the same public keys
// as the stored key it claims to be.
func sameKeys(stored, signed json.RawMessage) bool {
	var a, b struct {
		Keys map[string]string `json:"keys"`
	}
	if json.Unmarshal(stored, &a) != nil || json.Unmarshal(signed, &b) != nil || len(a.Keys) == 0 {
		return false
	}
	return maps.Equal(a.Keys, b.Keys)
}
