package e2ee

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// outbox collects the EDUs of one write transaction; they are queued once it
// has committed (sender.EnqueueEDU takes its own write transaction).
type outbox struct {
	edus []pendingEDU
}

type pendingEDU struct {
	servers []string
	eduType string
	content json.RawMessage
}

// send queues the outbox's EDUs. EDUs are best effort: a failure is logged.
func (s *Service) send(ctx context.Context, out *outbox) {
	if s.edus == nil {
		return
	}
	for _, e := range out.edus {
		if err := s.edus.EnqueueEDU(ctx, e.servers, e.eduType, e.content); err != nil {
			s.log.Warn("queueing an EDU failed", "edu_type", e.eduType, "err", err)
		}
	}
}

// DeviceListUpdate is the content of an m.device_list_update EDU.
type DeviceListUpdate struct {
	UserID            id.UserID       `json:"user_id"`
	DeviceID          id.DeviceID     `json:"device_id"`
	DeviceDisplayName string          `json:"device_display_name,omitempty"`
	StreamID          int64           `json:"stream_id"`
	PrevID            []int64         `json:"prev_id"`
	Deleted           bool            `json:"deleted,omitempty"`
	Keys              json.RawMessage `json:"keys,omitempty"`
}

// SigningKeyUpdate is the content of an m.signing_key_update EDU.
type SigningKeyUpdate struct {
	UserID         id.UserID       `json:"user_id"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// shareChange adds to out the EDUs telling the servers that share a room
// with local user about a change at stream position pos: one
// m.device_list_update per changed device, chained by prev_id (spec:
// server-server-api "Device Management"), and an m.signing_key_update for
// cross-signing changes.
func (s *Service) shareChange(ctx context.Context, tx *storage.Tx, out *outbox, user id.UserID, pos int64, devices []id.DeviceID, crossSigning bool) error {
	servers, err := s.sharingServers(ctx, tx, user)
	if err != nil || len(servers) == 0 {
		return err
	}
	// The keys go out with the signatures uploaded for them, as a query
	// would show them, since receivers cache what the EDUs carry.
	sigs, err := signaturesIn(ctx, tx, user)
	if err != nil {
		return err
	}
	own := func(signer id.UserID) bool { return signer == user }
	for _, dev := range devices {
		var prev int64
		err := tx.QueryRowContext(ctx, `SELECT stream_id FROM e2ee_device_list_streams WHERE user_id = $1`, user.String()).Scan(&prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_device_list_streams (user_id, stream_id) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id`, user.String(), pos); err != nil {
			return err
		}
		upd := DeviceListUpdate{UserID: user, DeviceID: dev, StreamID: pos, PrevID: []int64{}}
		if prev != 0 {
			upd.PrevID = []int64{prev}
		}
		// A device that is gone is deleted; one without keys yet (a new
		// login) goes out with its name only.
		var raw sql.NullString
		var name string
		err = tx.QueryRowContext(ctx, `SELECT k.key_json, COALESCE(d.display_name, '') FROM devices d
			LEFT JOIN e2ee_device_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id
			WHERE d.user_id = $1 AND d.device_id = $2`, user.String(), dev.String()).Scan(&raw, &name)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			upd.Deleted = true
		case err != nil:
			return err
		default:
			upd.DeviceDisplayName = name
			if raw.Valid {
				upd.Keys = withUnsigned(withSignatures(json.RawMessage(raw.String), sigs[dev.String()], nil), name)
			}
		}
		content, err := json.Marshal(upd)
		if err != nil {
			return err
		}
		out.edus = append(out.edus, pendingEDU{servers, "m.device_list_update", content})
		pos++ // a second device in one change chains after the first (keysChanged reserved the positions)
	}
	if crossSigning {
		upd := SigningKeyUpdate{UserID: user}
		rows, err := tx.QueryContext(ctx, `SELECT key_type, key_json FROM e2ee_cross_signing_keys WHERE user_id = $1`, user.String())
		if err != nil {
			return err
		}
		for rows.Next() {
			var typ, raw string
			if err := rows.Scan(&typ, &raw); err != nil {
				rows.Close()
				return err
			}
			switch typ {
			case "master":
				upd.MasterKey = withSignatures(json.RawMessage(raw), sigs[publicKeyOf(json.RawMessage(raw))], own)
			case "self_signing":
				upd.SelfSigningKey = withSignatures(json.RawMessage(raw), sigs[publicKeyOf(json.RawMessage(raw))], own)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		content, err := json.Marshal(upd)
		if err != nil {
			return err
		}
		out.edus = append(out.edus, pendingEDU{servers, "m.signing_key_update", content})
	}
	return nil
}

// sharingServers lists the other servers with a user joined to a room that
// user is joined to.
func (s *Service) sharingServers(ctx context.Context, tx *storage.Tx, user id.UserID) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT other.state_key FROM current_state me
		JOIN current_state other ON other.room_id = me.room_id AND other.type = 'm.room.member' AND other.membership = 'join'
		WHERE me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join'`, user.String())
	if err != nil {
		return nil, fmt.Errorf("listing servers sharing a room with %s: %w", user, err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	var out []string
	for rows.Next() {
		var u id.UserID
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		srv := u.Homeserver()
		if srv != "" && srv != s.serverName && !seen[srv] {
			seen[srv] = true
			out = append(out, srv)
		}
	}
	return out, rows.Err()
}

// UserDevicesResp is the body of GET /_matrix/federation/v1/user/devices/{userId}
// (user_devices.yaml).
type UserDevicesResp struct {
	UserID         id.UserID       `json:"user_id"`
	StreamID       int64           `json:"stream_id"`
	Devices        []Device        `json:"devices"`
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
}

// UserDevices returns a local user's devices with their keys, for another
// server.
func (s *Service) UserDevices(ctx context.Context, user id.UserID) (*UserDevicesResp, error) {
	if !s.local(user) {
		return nil, mxerr.InvalidParam.With("%s is not a user of this server", user)
	}
	sigs, err := s.signatures(ctx, user)
	if err != nil {
		return nil, err
	}
	devs, err := s.localDevices(ctx, user, nil, sigs)
	if err != nil {
		return nil, err
	}
	resp := &UserDevicesResp{UserID: user, Devices: devs}
	if resp.Devices == nil {
		resp.Devices = []Device{}
	}
	err = s.db.QueryRowContext(ctx, `SELECT stream_id FROM e2ee_device_list_streams WHERE user_id = $1`, user.String()).Scan(&resp.StreamID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("loading the device list stream of %s: %w", user, err)
	}
	cs, err := s.crossSigningKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	own := func(signer id.UserID) bool { return signer == user }
	if k, ok := cs["master"]; ok {
		resp.MasterKey = withSignatures(k, sigs[publicKeyOf(k)], own)
	}
	if k, ok := cs["self_signing"]; ok {
		resp.SelfSigningKey = withSignatures(k, sigs[publicKeyOf(k)], own)
	}
	return resp, nil
}

// queryRemote asks server for its users' keys (POST
// /_matrix/federation/v1/user/keys/query).
func (s *Service) queryRemote(ctx context.Context, server string, users map[id.UserID][]id.DeviceID) (*QueryResp, error) {
	body := map[string]any{"device_keys": users}
	var resp QueryResp
	if err := s.remote.Do(ctx, server, "POST", "/_matrix/federation/v1/user/keys/query", nil, body, &resp); err != nil {
		return nil, fmt.Errorf("querying keys on %s: %w", server, err)
	}
	for user, devs := range resp.DeviceKeys {
		if user.Homeserver() != server {
			delete(resp.DeviceKeys, user)
			continue
		}
		for dev, raw := range devs {
			var dk deviceKeys
			if json.Unmarshal(raw, &dk) != nil || dk.UserID != user || dk.DeviceID != dev {
				delete(devs, dev)
				continue
			}
			devs[dev] = ensureUnsigned(raw)
		}
	}
	return &resp, nil
}

// claimRemote claims keys of server's users (POST
// /_matrix/federation/v1/user/keys/claim).
func (s *Service) claimRemote(ctx context.Context, server string, oneTimeKeys map[id.UserID]map[id.DeviceID]string) (ClaimedKeys, error) {
	body := map[string]any{"one_time_keys": oneTimeKeys}
	var resp struct {
		OneTimeKeys ClaimedKeys `json:"one_time_keys"`
	}
	if err := s.remote.Do(ctx, server, "POST", "/_matrix/federation/v1/user/keys/claim", nil, body, &resp); err != nil {
		return nil, fmt.Errorf("claiming keys on %s: %w", server, err)
	}
	for user := range resp.OneTimeKeys {
		if user.Homeserver() != server {
			delete(resp.OneTimeKeys, user)
		}
	}
	return resp.OneTimeKeys, nil
}

// Joined tells the other servers of roomID about the devices of the local
// user who just joined it, with an m.device_list_update per device (spec:
// server-server-api "Device Management"): until then those servers had no
// reason to track the user, and their users would not encrypt for the
// joiner's devices. The updates go to every server sharing a room with the
// user, so that the prev_id chain that each of them follows has no gap. A
// join that follows a join (a profile change) and a join of a room with no
// other server send nothing. room calls it (through the homeserver's
// membership hook) after the join has committed.
func (s *Service) Joined(ctx context.Context, roomID id.RoomID, user id.UserID) error {
	if !s.local(user) || s.edus == nil {
		return nil
	}
	newJoin, err := s.newJoin(ctx, roomID, user)
	if err != nil || !newJoin {
		return err
	}
	var one int
	err = s.db.QueryRowContext(ctx, `SELECT 1 FROM current_state
		WHERE room_id = $1 AND type = 'm.room.member' AND membership = 'join' AND state_key NOT LIKE $2 LIMIT 1`,
		roomID.String(), "%:"+s.serverName).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // no other server in the room
	}
	if err != nil {
		return fmt.Errorf("looking for remote members of %s: %w", roomID, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id`, user.String())
	if err != nil {
		return fmt.Errorf("listing devices of %s: %w", user, err)
	}
	var devices []id.DeviceID
	for rows.Next() {
		var d id.DeviceID
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return err
		}
		devices = append(devices, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(devices) == 0 {
		return err
	}
	var out outbox
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		out = outbox{}
		n := int64(len(devices))
		last, err := storage.NextID(ctx, tx, "stream", n)
		if err != nil {
			return err
		}
		return s.shareChange(ctx, tx, &out, user, last-n+1, devices, false)
	})
	if err != nil {
		return fmt.Errorf("announcing the devices of %s after joining %s: %w", user, roomID, err)
	}
	s.send(ctx, &out)
	return nil
}

// newJoin reports whether user's current membership of roomID is a join
// that did not replace a join.
func (s *Service) newJoin(ctx context.Context, roomID id.RoomID, user id.UserID) (bool, error) {
	var membership sql.NullString
	var prev sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT cs.membership, p.json FROM current_state cs
		JOIN events e ON e.event_nid = cs.event_nid
		LEFT JOIN events p ON p.event_nid = e.replaces_nid
		WHERE cs.room_id = $1 AND cs.type = 'm.room.member' AND cs.state_key = $2`,
		roomID.String(), user.String()).Scan(&membership, &prev)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("loading the membership of %s in %s: %w", user, roomID, err)
	}
	if membership.String != "join" {
		return false, nil
	}
	if !prev.Valid {
		return true, nil
	}
	var p struct {
		Content struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	if json.Unmarshal([]byte(prev.String), &p) != nil {
		return true, nil
	}
	return p.Content.Membership != "join", nil
}
