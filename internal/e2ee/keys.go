package e2ee

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
)

// deviceKeys is the part of a device_keys object the server checks.
type deviceKeys struct {
	UserID     id.UserID         `json:"user_id"`
	DeviceID   id.DeviceID       `json:"device_id"`
	Algorithms []string          `json:"algorithms"`
	Keys       map[string]string `json:"keys"`
}

// Upload stores the keys of user's device (POST /keys/upload): its device
// keys (nil to leave them), one-time keys and fallback keys, each keyed by
// "<algorithm>:<key_id>". It returns the device's unclaimed one-time key
// counts by algorithm.
func (s *Service) Upload(ctx context.Context, user id.UserID, device id.DeviceID, devKeys json.RawMessage,
	oneTime, fallback map[string]json.RawMessage) (map[string]int, error) {
	if len(devKeys) > 0 && string(devKeys) != "null" {
		var dk deviceKeys
		if err := json.Unmarshal(devKeys, &dk); err != nil {
			return nil, mxerr.BadJSON.With("device_keys: %v", err)
		}
		if dk.UserID != user || dk.DeviceID != device {
			return nil, mxerr.InvalidParam.With("device_keys must name the calling user and device")
		}
		if len(dk.Keys) == 0 || len(dk.Algorithms) == 0 {
			return nil, mxerr.BadJSON.With("device_keys needs algorithms and keys")
		}
	} else {
		devKeys = nil
	}
	otks, err := splitKeys(oneTime)
	if err != nil {
		return nil, err
	}
	fbks, err := splitKeys(fallback)
	if err != nil {
		return nil, err
	}
	var out outbox
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		out = outbox{}
		if devKeys != nil {
			var old string
			err := tx.QueryRowContext(ctx, `SELECT key_json FROM e2ee_device_keys WHERE user_id = $1 AND device_id = $2`,
				user.String(), device.String()).Scan(&old)
			if err != nil && err != sql.ErrNoRows {
				return err
			}
			if !jsonEqual([]byte(old), devKeys) {
				if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
					ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`,
					user.String(), device.String(), string(devKeys)); err != nil {
					return err
				}
				if err := s.keysChanged(ctx, tx, &out, user, []id.DeviceID{device}, false); err != nil {
					return err
				}
			}
		}
		if len(otks) > 0 || len(fbks) > 0 {
			tx.AfterCommit(func() { s.notifier.Notify(notifier.OneTimeKeys, user) })
		}
		// Claims hand out the keys of the oldest upload first: each upload
		// takes the next number of its counter.
		var seq int64
		if len(otks) > 0 {
			var err error
			if seq, err = storage.NextID(ctx, tx, "one_time_key_upload", 1); err != nil {
				return err
			}
		}
		for _, k := range otks {
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_one_time_keys (user_id, device_id, algorithm, key_id, key_json, upload_seq)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING`,
				user.String(), device.String(), k.algorithm, k.id, string(k.json), seq); err != nil {
				return err
			}
		}
		for _, k := range fbks {
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
				VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (user_id, device_id, algorithm)
				DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0`,
				user.String(), device.String(), k.algorithm, k.id, string(k.json)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("uploading keys of %s device %s: %w", user, device, err)
	}
	s.send(ctx, &out)
	return s.OneTimeKeyCounts(ctx, user, device)
}

type splitKey struct {
	algorithm, id string
	json          json.RawMessage
}

// splitKeys parses a map of "<algorithm>:<key_id>" to key objects.
func splitKeys(m map[string]json.RawMessage) ([]splitKey, error) {
	out := make([]splitKey, 0, len(m))
	for k, v := range m {
		alg, kid, ok := strings.Cut(k, ":")
		if !ok || alg == "" || kid == "" {
			return nil, mxerr.BadJSON.With("key ID %q is not <algorithm>:<key_id>", k)
		}
		if len(v) == 0 || string(v) == "null" {
			return nil, mxerr.BadJSON.With("key %q has no value", k)
		}
		out = append(out, splitKey{alg, kid, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].algorithm+out[i].id < out[j].algorithm+out[j].id })
	return out, nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ca, _ := json.Marshal(x)
	cb, _ := json.Marshal(y)
	return string(ca) == string(cb)
}

// OneTimeKeyCounts returns the device's unclaimed one-time keys by
// algorithm (what /keys/upload answers); signed_curve25519 is always
// present, as clients expect.
func (s *Service) OneTimeKeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, error) {
	counts, _, err := s.KeyCounts(ctx, user, device)
	return counts, err
}

// KeyCounts returns what every /sync reports about the device's keys, in
// one query: its unclaimed one-time keys by algorithm
// (device_one_time_keys_count) and the algorithms of its unused fallback
// keys (device_unused_fallback_key_types).
func (s *Service) KeyCounts(ctx context.Context, user id.UserID, device id.DeviceID) (map[string]int, []string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT algorithm, COUNT(*), 0 FROM e2ee_one_time_keys
		WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm
		UNION ALL SELECT algorithm, 0, 1 FROM e2ee_fallback_keys
		WHERE user_id = $1 AND device_id = $2 AND used = 0`, user.String(), device.String())
	if err != nil {
		return nil, nil, fmt.Errorf("counting keys of %s device %s: %w", user, device, err)
	}
	defer rows.Close()
	counts := map[string]int{"signed_curve25519": 0}
	fallback := []string{}
	for rows.Next() {
		var alg string
		var n, isFallback int
		if err := rows.Scan(&alg, &n, &isFallback); err != nil {
			return nil, nil, err
		}
		if isFallback == 1 {
			fallback = append(fallback, alg)
		} else {
			counts[alg] = n
		}
	}
	slices.Sort(fallback)
	return counts, fallback, rows.Err()
}

// QueryResp is the body of /keys/query, on both APIs (keys.yaml,
// user_keys.yaml).
type QueryResp struct {
	Failures        map[string]any                                `json:"failures"`
	DeviceKeys      map[id.UserID]map[id.DeviceID]json.RawMessage `json:"device_keys"`
	MasterKeys      map[id.UserID]json.RawMessage                 `json:"master_keys,omitempty"`
	SelfSigningKeys map[id.UserID]json.RawMessage                 `json:"self_signing_keys,omitempty"`
	UserSigningKeys map[id.UserID]json.RawMessage                 `json:"user_signing_keys,omitempty"`
}

func newQueryResp() *QueryResp {
	return &QueryResp{
		Failures:        map[string]any{},
		DeviceKeys:      map[id.UserID]map[id.DeviceID]json.RawMessage{},
		MasterKeys:      map[id.UserID]json.RawMessage{},
		SelfSigningKeys: map[id.UserID]json.RawMessage{},
		UserSigningKeys: map[id.UserID]json.RawMessage{},
	}
}

// Query returns the device and cross-signing keys of users (POST
// /keys/query): for each user, the listed devices, or all when the list is
// empty. requester ("" for a federation request) sees its own user-signing
// key and its own signatures of other users' master keys. Remote users who
// share a room with a local user are answered from the device list cache
// (devicelists.go); other remote users are asked through the federation
// Doer, and an unreachable server is reported in failures.
func (s *Service) Query(ctx context.Context, requester id.UserID, users map[id.UserID][]id.DeviceID) (*QueryResp, error) {
	resp := newQueryResp()
	others := map[id.UserID][]id.DeviceID{}
	for user, devices := range users {
		if !s.local(user) {
			if requester != "" && s.remote != nil {
				others[user] = devices
			}
			continue
		}
		if err := s.queryLocal(ctx, requester, user, devices, resp); err != nil {
			return nil, err
		}
	}
	uncached, err := s.fromCache(ctx, others, resp)
	if err != nil {
		return nil, err
	}
	remote := map[string]map[id.UserID][]id.DeviceID{}
	for user, devices := range uncached {
		srv := user.Homeserver()
		if remote[srv] == nil {
			remote[srv] = map[id.UserID][]id.DeviceID{}
		}
		remote[srv][user] = devices
	}
	for srv, q := range remote {
		r, err := s.queryRemote(ctx, srv, q)
		if err != nil {
			s.log.Info("querying remote keys failed", "server", srv, "err", err)
			resp.Failures[srv] = map[string]any{"status": 503, "message": "the server could not be reached"}
			continue
		}
		for user, devs := range r.DeviceKeys {
			if _, asked := q[user]; !asked {
				continue
			}
			resp.DeviceKeys[user] = devs
		}
		for user, k := range r.MasterKeys {
			if _, asked := q[user]; asked {
				resp.MasterKeys[user] = k
			}
		}
		for user, k := range r.SelfSigningKeys {
			if _, asked := q[user]; asked {
				resp.SelfSigningKeys[user] = k
			}
		}
	}
	// Our users' signatures of remote users' master keys live only here,
	// and only their signer sees them.
	for user, raw := range resp.MasterKeys {
		if requester == "" || s.local(user) {
			continue
		}
		sigs, err := s.signatures(ctx, user)
		if err != nil {
			return nil, err
		}
		if ms := sigs[publicKeyOf(raw)]; len(ms) > 0 {
			resp.MasterKeys[user] = withSignatures(raw, ms, func(u id.UserID) bool { return u == requester })
		}
	}
	return resp, nil
}

// queryLocal adds a local user's keys to resp.
func (s *Service) queryLocal(ctx context.Context, requester, user id.UserID, devices []id.DeviceID, resp *QueryResp) error {
	sigs, err := s.signatures(ctx, user)
	if err != nil {
		return err
	}
	devs, err := s.localDevices(ctx, user, devices, sigs)
	if err != nil {
		return err
	}
	resp.DeviceKeys[user] = map[id.DeviceID]json.RawMessage{}
	for _, d := range devs {
		resp.DeviceKeys[user][d.DeviceID] = d.Keys
	}
	cs, err := s.crossSigningKeys(ctx, user)
	if err != nil {
		return err
	}
	for typ, raw := range cs {
		visible := func(signer id.UserID) bool { return signer == user || signer == requester }
		raw = withSignatures(raw, sigs[publicKeyOf(raw)], visible)
		switch typ {
		case "master":
			resp.MasterKeys[user] = raw
		case "self_signing":
			resp.SelfSigningKeys[user] = raw
		case "user_signing":
			if requester == user {
				resp.UserSigningKeys[user] = raw
			}
		}
	}
	return nil
}

// Device is one device of a user with its keys, as /user/devices lists it.
type Device struct {
	DeviceID    id.DeviceID     `json:"device_id"`
	DisplayName string          `json:"device_display_name,omitempty"`
	Keys        json.RawMessage `json:"keys"`
}

// localDevices returns the keys of a local user's devices (all when only
// is empty) that still exist, with the signatures uploaded for them merged
// in and the display name in unsigned.
func (s *Service) localDevices(ctx context.Context, user id.UserID, only []id.DeviceID, sigs targetSignatures) ([]Device, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT k.device_id, k.key_json, COALESCE(d.display_name, '')
		FROM e2ee_device_keys k JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
		WHERE k.user_id = $1 ORDER BY k.device_id`, user.String())
	if err != nil {
		return nil, fmt.Errorf("loading device keys of %s: %w", user, err)
	}
	defer rows.Close()
	want := map[id.DeviceID]bool{}
	for _, d := range only {
		want[d] = true
	}
	var out []Device
	for rows.Next() {
		var d Device
		var raw string
		if err := rows.Scan(&d.DeviceID, &raw, &d.DisplayName); err != nil {
			return nil, err
		}
		if len(want) > 0 && !want[d.DeviceID] {
			continue
		}
		d.Keys = withUnsigned(withSignatures(json.RawMessage(raw), sigs[d.DeviceID.String()], nil), d.DisplayName)
		out = append(out, d)
	}
	return out, rows.Err()
}

// withUnsigned sets the unsigned object of a device_keys object: empty, or
// holding device_display_name when the device has a name. Synapse always
// sends unsigned, and some peers depend on it: Dendrite passes a missing
// one on to its clients as null, and matrix-js-sdk's Rust crypto then
// drops the device.
func withUnsigned(raw json.RawMessage, name string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return raw
	}
	u := map[string]string{}
	if name != "" {
		u["device_display_name"] = name
	}
	m["unsigned"], _ = json.Marshal(u)
	out, _ := json.Marshal(m)
	return out
}

// ensureUnsigned gives a device_keys object from another server an empty
// unsigned object when it has none (or null), for the clients withUnsigned
// describes.
func ensureUnsigned(raw json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return raw
	}
	if u := m["unsigned"]; len(u) > 0 && u[0] == '{' {
		return raw
	}
	m["unsigned"] = json.RawMessage(`{}`)
	out, _ := json.Marshal(m)
	return out
}

// ClaimedKeys maps user, device and "<algorithm>:<key_id>" to a claimed key.
type ClaimedKeys map[id.UserID]map[id.DeviceID]map[string]json.RawMessage

// Claim claims one key per requested device and algorithm (POST
// /keys/claim): an unclaimed one-time key if there is one, else the
// device's fallback key, which stays available. Remote users are claimed
// through the federation Doer unless fromRemote; failures maps unreachable
// servers.
func (s *Service) Claim(ctx context.Context, req map[id.UserID]map[id.DeviceID]string, fromRemote bool) (ClaimedKeys, map[string]any, error) {
	out := ClaimedKeys{}
	failures := map[string]any{}
	remote := map[string]map[id.UserID]map[id.DeviceID]string{}
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		for user, devs := range req {
			if !s.local(user) {
				if !fromRemote && s.remote != nil {
					srv := user.Homeserver()
					if remote[srv] == nil {
						remote[srv] = map[id.UserID]map[id.DeviceID]string{}
					}
					remote[srv][user] = devs
				}
				continue
			}
			for dev, alg := range devs {
				k, err := claimOne(ctx, tx, user, dev, alg)
				if err != nil {
					return err
				}
				if k == nil {
					continue
				}
				tx.AfterCommit(func() { s.notifier.Notify(notifier.OneTimeKeys, user) })
				if out[user] == nil {
					out[user] = map[id.DeviceID]map[string]json.RawMessage{}
				}
				out[user][dev] = map[string]json.RawMessage{k.algorithm + ":" + k.id: k.json}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("claiming keys: %w", err)
	}
	for srv, q := range remote {
		r, err := s.claimRemote(ctx, srv, q)
		if err != nil {
			s.log.Info("claiming remote keys failed", "server", srv, "err", err)
			failures[srv] = map[string]any{"status": 503, "message": "the server could not be reached"}
			continue
		}
		for user, devs := range r {
			if _, asked := q[user]; asked {
				out[user] = devs
			}
		}
	}
	return out, failures, nil
}

// claimOne claims a one-time key of the device for alg, one of the oldest
// upload's, else its fallback key; nil when it has neither.
func claimOne(ctx context.Context, tx *storage.Tx, user id.UserID, dev id.DeviceID, alg string) (*splitKey, error) {
	k := splitKey{algorithm: alg}
	var raw string
	err := tx.QueryRowContext(ctx, `SELECT key_id, key_json FROM e2ee_one_time_keys
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY upload_seq, key_id LIMIT 1`,
		user.String(), dev.String(), alg).Scan(&k.id, &raw)
	switch {
	case err == nil:
		if _, err := tx.ExecContext(ctx, `DELETE FROM e2ee_one_time_keys
			WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4`,
			user.String(), dev.String(), alg, k.id); err != nil {
			return nil, err
		}
		k.json = json.RawMessage(raw)
		return &k, nil
	case err != sql.ErrNoRows:
		return nil, err
	}
	err = tx.QueryRowContext(ctx, `SELECT key_id, key_json FROM e2ee_fallback_keys
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`, user.String(), dev.String(), alg).Scan(&k.id, &raw)
	if err == sql.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE e2ee_fallback_keys SET used = 1
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3`, user.String(), dev.String(), alg); err != nil {
		return nil, err
	}
	k.json = json.RawMessage(raw)
	return &k, nil
}

// DeleteDevices drops the keys and the to-device inbox of a local user's
// deleted devices and records the change, so that other users (and other
// servers, through m.device_list_update with deleted set) stop encrypting
// for them. Whoever deletes devices (users.Service's callers) calls it
// after the deletion.
func (s *Service) DeleteDevices(ctx context.Context, user id.UserID, devices []id.DeviceID) error {
	var out outbox
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		out = outbox{}
		for _, d := range devices {
			for _, table := range []string{"e2ee_device_keys", "e2ee_one_time_keys", "e2ee_fallback_keys", "e2ee_to_device"} {
				if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE user_id = $1 AND device_id = $2`, user.String(), d.String()); err != nil {
					return err
				}
			}
		}
		tx.AfterCommit(func() { s.notifier.Notify(notifier.OneTimeKeys, user) })
		return s.keysChanged(ctx, tx, &out, user, devices, false)
	})
	if err != nil {
		return fmt.Errorf("deleting the keys of %d devices of %s: %w", len(devices), user, err)
	}
	s.send(ctx, &out)
	return nil
}

// DevicesChanged records that a local user's devices were created (a new
// login) or renamed, as Synapse does: the user and everyone sharing a room
// with them see the user in device_lists.changed, and the servers sharing
// a room get an m.device_list_update per device, so that a new device is
// known before it uploads keys and a new name shows everywhere. Whoever
// creates or renames devices (users.Service's callers) calls it after.
func (s *Service) DevicesChanged(ctx context.Context, user id.UserID, devices []id.DeviceID) error {
	var out outbox
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		out = outbox{}
		return s.keysChanged(ctx, tx, &out, user, devices, false)
	})
	if err != nil {
		return fmt.Errorf("recording a change of %d devices of %s: %w", len(devices), user, err)
	}
	s.send(ctx, &out)
	return nil
}
