package e2ee

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// The cache of remote users' device lists (spec: server-server-api "Device
// Management"). Like Synapse, this server tracks only the remote users who
// share a room with a local user; /keys/query for anyone else goes to their
// server. A tracked user's list is filled by a resync through GET
// /user/devices and then kept current by m.device_list_update EDUs, which
// apply only when their prev_id chain connects to the last stream_id
// applied. A gap marks the list stale; the next /keys/query that needs it
// resyncs (rather than the EDU handler, so that an inbound /send is never
// held up by a request back to its origin).
//
// Invalidation: a list is dropped as soon as an EDU or a query finds that
// no local user shares a room with its user any more. Because membership
// changes do not pass through this package, a list is also refetched when
// its last resync predates the current unbroken stretch of room sharing:
// the updates sent while the rooms were not shared never reached us.

// queryer is what storage.DB and storage.Tx share for reads.
type queryer interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// sharing reports whether a local user shares a joined room with the remote
// user and, if so, a stream position at or after the start of the current
// unbroken stretch of sharing: for each shared room, the later of the
// user's current join and the earliest current local join, and the
// earliest of those over the rooms. A profile change re-issues a join and
// moves the position later, which only costs a needless resync.
func (s *Service) sharing(ctx context.Context, q queryer, user id.UserID) (bool, int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT cs.room_id, e.stream_pos, lm.stream_pos FROM current_state cs
		JOIN events e ON e.event_nid = cs.event_nid
		JOIN local_memberships lm ON lm.room_id = cs.room_id AND lm.membership = 'join'
		WHERE cs.type = 'm.room.member' AND cs.state_key = $1 AND cs.membership = 'join'`, user.String())
	if err != nil {
		return false, 0, fmt.Errorf("listing rooms shared with %s: %w", user, err)
	}
	defer rows.Close()
	type span struct{ theirs, ours int64 }
	rooms := map[string]*span{}
	for rows.Next() {
		var room string
		var theirs, ours int64
		if err := rows.Scan(&room, &theirs, &ours); err != nil {
			return false, 0, err
		}
		if r := rooms[room]; r != nil {
			r.ours = min(r.ours, ours)
		} else {
			rooms[room] = &span{theirs, ours}
		}
	}
	if err := rows.Err(); err != nil {
		return false, 0, err
	}
	if len(rooms) == 0 {
		return false, 0, nil
	}
	since := int64(math.MaxInt64)
	for _, r := range rooms {
		since = min(since, max(r.theirs, r.ours))
	}
	return true, since, nil
}

// forget drops the cached device list of user.
func forget(ctx context.Context, tx *storage.Tx, user id.UserID) error {
	for _, table := range []string{"e2ee_remote_devices", "e2ee_remote_device_lists"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE user_id = $1`, user.String()); err != nil {
			return fmt.Errorf("dropping the cached device list of %s: %w", user, err)
		}
	}
	return nil
}

// ReceiveDeviceListUpdate applies an m.device_list_update EDU from origin:
// it updates the cached device list of its user when the prev_id chain
// connects to the last update applied, marks the list stale when it does
// not (a gap), and drops it when no local user shares a room with the user
// any more. In every case local users sharing a room with the user see a
// device list change in /sync.
func (s *Service) ReceiveDeviceListUpdate(ctx context.Context, origin string, content json.RawMessage) error {
	var u DeviceListUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return fmt.Errorf("parsing m.device_list_update from %s: %w", origin, err)
	}
	if u.UserID.Homeserver() != origin || s.local(u.UserID) {
		return fmt.Errorf("%s sent a device update for %s", origin, u.UserID)
	}
	if u.DeviceID == "" {
		return fmt.Errorf("%s sent a device update for %s without a device_id", origin, u.UserID)
	}
	if len(u.Keys) == 0 || string(u.Keys) == "null" {
		u.Keys = nil
	} else if !u.Deleted {
		var dk deviceKeys
		if json.Unmarshal(u.Keys, &dk) != nil || dk.UserID != u.UserID || dk.DeviceID != u.DeviceID {
			return fmt.Errorf("%s sent keys for %s device %s that name another device", origin, u.UserID, u.DeviceID)
		}
	}
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if err := s.applyDeviceListUpdate(ctx, tx, u); err != nil {
			return err
		}
		return s.keysChanged(ctx, tx, &outbox{}, u.UserID, nil, false)
	})
	if err != nil {
		return fmt.Errorf("applying a device list update of %s: %w", u.UserID, err)
	}
	return nil
}

// applyDeviceListUpdate updates the cache for u inside tx.
func (s *Service) applyDeviceListUpdate(ctx context.Context, tx *storage.Tx, u DeviceListUpdate) error {
	shared, _, err := s.sharing(ctx, tx, u.UserID)
	if err != nil {
		return err
	}
	if !shared {
		return forget(ctx, tx, u.UserID)
	}
	var streamID, stale int64
	err = tx.QueryRowContext(ctx, `SELECT stream_id, stale FROM e2ee_remote_device_lists WHERE user_id = $1`,
		u.UserID.String()).Scan(&streamID, &stale)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil // not fetched yet: the first query resyncs in full
	case err != nil:
		return err
	case stale != 0 || u.StreamID <= streamID:
		return nil // a resync is due anyway, or the update was seen already
	}
	// Every stream_id up to streamID is reflected in the cache (each update
	// was applied in chain order, or a resync covered it), so a prev_id is
	// known exactly when it is at most streamID.
	for _, prev := range u.PrevID {
		if prev > streamID {
			s.log.Info("gap in a device list update chain", "user_id", u.UserID, "stream_id", u.StreamID, "prev_id", prev, "have", streamID)
			_, err := tx.ExecContext(ctx, `UPDATE e2ee_remote_device_lists SET stale = 1 WHERE user_id = $1`, u.UserID.String())
			return err
		}
	}
	switch {
	case u.Deleted:
		_, err = tx.ExecContext(ctx, `DELETE FROM e2ee_remote_devices WHERE user_id = $1 AND device_id = $2`,
			u.UserID.String(), u.DeviceID.String())
	case u.Keys != nil:
		_, err = tx.ExecContext(ctx, `INSERT INTO e2ee_remote_devices (user_id, device_id, display_name, key_json)
			VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id)
			DO UPDATE SET display_name = excluded.display_name, key_json = excluded.key_json`,
			u.UserID.String(), u.DeviceID.String(), u.DeviceDisplayName, string(u.Keys))
	default: // a device without keys is not listed; only its name can change
		_, err = tx.ExecContext(ctx, `UPDATE e2ee_remote_devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2`,
			u.UserID.String(), u.DeviceID.String(), u.DeviceDisplayName)
	}
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE e2ee_remote_device_lists SET stream_id = $2 WHERE user_id = $1`, u.UserID.String(), u.StreamID)
	return err
}

// ReceiveSigningKeyUpdate applies an m.signing_key_update EDU from origin:
// the cross-signing keys it carries replace the cached ones of a tracked
// user, and local users sharing a room with the user see a change.
func (s *Service) ReceiveSigningKeyUpdate(ctx context.Context, origin string, content json.RawMessage) error {
	var u SigningKeyUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return fmt.Errorf("parsing m.signing_key_update from %s: %w", origin, err)
	}
	if u.UserID.Homeserver() != origin || s.local(u.UserID) {
		return fmt.Errorf("%s sent a signing key update for %s", origin, u.UserID)
	}
	master, err := ownCrossSigningKey(u.UserID, u.MasterKey)
	if err != nil {
		return fmt.Errorf("m.signing_key_update from %s: master_key: %w", origin, err)
	}
	selfSigning, err := ownCrossSigningKey(u.UserID, u.SelfSigningKey)
	if err != nil {
		return fmt.Errorf("m.signing_key_update from %s: self_signing_key: %w", origin, err)
	}
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		shared, _, err := s.sharing(ctx, tx, u.UserID)
		if err != nil {
			return err
		}
		if !shared {
			if err := forget(ctx, tx, u.UserID); err != nil {
				return err
			}
		} else {
			if master != "" {
				if _, err := tx.ExecContext(ctx, `UPDATE e2ee_remote_device_lists SET master_key = $2 WHERE user_id = $1`,
					u.UserID.String(), master); err != nil {
					return err
				}
			}
			if selfSigning != "" {
				if _, err := tx.ExecContext(ctx, `UPDATE e2ee_remote_device_lists SET self_signing_key = $2 WHERE user_id = $1`,
					u.UserID.String(), selfSigning); err != nil {
					return err
				}
			}
		}
		return s.keysChanged(ctx, tx, &outbox{}, u.UserID, nil, false)
	})
	if err != nil {
		return fmt.Errorf("applying a signing key update of %s: %w", u.UserID, err)
	}
	return nil
}

// ownCrossSigningKey checks that raw (possibly absent) is a cross-signing
// key of user and returns it as a string, "" when absent.
func ownCrossSigningKey(user id.UserID, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var k crossSigningKey
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", err
	}
	if k.UserID != user || len(k.Keys) == 0 {
		return "", fmt.Errorf("not a key of %s", user)
	}
	return string(raw), nil
}

// Resync fetches the full device list of the remote user through GET
// /_matrix/federation/v1/user/devices/{userId} and replaces the cached one,
// if a local user still shares a room with them.
func (s *Service) Resync(ctx context.Context, user id.UserID) error {
	if s.local(user) || s.remote == nil {
		return fmt.Errorf("%s has no remote device list to resync", user)
	}
	var resp UserDevicesResp
	path := "/_matrix/federation/v1/user/devices/" + url.PathEscape(user.String())
	if err := s.remote.Do(ctx, user.Homeserver(), "GET", path, nil, nil, &resp); err != nil {
		return fmt.Errorf("resyncing the device list of %s: %w", user, err)
	}
	if resp.UserID != user {
		return fmt.Errorf("resyncing the device list of %s: the answer is about %q", user, resp.UserID)
	}
	master, err := ownCrossSigningKey(user, resp.MasterKey)
	if err != nil {
		master = ""
	}
	selfSigning, err := ownCrossSigningKey(user, resp.SelfSigningKey)
	if err != nil {
		selfSigning = ""
	}
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		shared, _, err := s.sharing(ctx, tx, user)
		if err != nil {
			return err
		}
		if !shared {
			return forget(ctx, tx, user)
		}
		var pos int64
		err = tx.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'stream'`).Scan(&pos)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := forget(ctx, tx, user); err != nil {
			return err
		}
		for _, d := range resp.Devices {
			var dk deviceKeys
			if json.Unmarshal(d.Keys, &dk) != nil || dk.UserID != user || dk.DeviceID != d.DeviceID || d.DeviceID == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_remote_devices (user_id, device_id, display_name, key_json)
				VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO NOTHING`,
				user.String(), d.DeviceID.String(), d.DisplayName, string(d.Keys)); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO e2ee_remote_device_lists
			(user_id, stream_id, stale, synced_pos, master_key, self_signing_key) VALUES ($1, $2, 0, $3, $4, $5)`,
			user.String(), resp.StreamID, pos, master, selfSigning)
		return err
	})
	if err != nil {
		return fmt.Errorf("storing the device list of %s: %w", user, err)
	}
	return nil
}

// maxResyncs bounds the resyncs one /keys/query runs at a time.
const maxResyncs = 8

// fromCache adds the keys of the remote users (for each, only the listed
// devices, or all) to resp from the cache, first resyncing, several at a
// time, the lists that are missing, stale or older than the current
// stretch of room sharing. It returns the users it could not answer for:
// those not tracked (no local user shares a room with them, whose cached
// list it drops) and those whose resync failed. The caller asks their
// servers directly.
func (s *Service) fromCache(ctx context.Context, users map[id.UserID][]id.DeviceID, resp *QueryResp) (map[id.UserID][]id.DeviceID, error) {
	rest := map[id.UserID][]id.DeviceID{}
	var serve, resync []id.UserID
	for user := range users {
		state, err := s.cacheState(ctx, user)
		if err != nil {
			return nil, err
		}
		switch state {
		case cacheUntracked:
			rest[user] = users[user]
		case cacheFresh:
			serve = append(serve, user)
		case cacheNeedsResync:
			resync = append(resync, user)
		}
	}
	failed := make([]bool, len(resync))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxResyncs)
	for i, user := range resync {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.Resync(ctx, user); err != nil {
				s.log.Info("resyncing a device list failed", "user_id", user, "err", err)
				failed[i] = true
			}
		}()
	}
	wg.Wait()
	for i, user := range resync {
		if failed[i] {
			rest[user] = users[user]
		} else {
			serve = append(serve, user)
		}
	}
	for _, user := range serve {
		ok, err := s.serveCached(ctx, user, users[user], resp)
		if err != nil {
			return nil, err
		}
		if !ok {
			rest[user] = users[user] // dropped since: unshared meanwhile
		}
	}
	return rest, nil
}

// cacheState is what the cache can do for a remote user's query.
type cacheState int

const (
	cacheUntracked   cacheState = iota // no shared room: ask the server
	cacheFresh                         // serve from the cache
	cacheNeedsResync                   // resync through /user/devices first
)

// cacheState classifies the cached device list of the remote user,
// dropping it when no local user shares a room with them any more.
func (s *Service) cacheState(ctx context.Context, user id.UserID) (cacheState, error) {
	shared, since, err := s.sharing(ctx, s.db, user)
	if err != nil {
		return 0, err
	}
	var stale, synced int64
	err = s.db.QueryRowContext(ctx, `SELECT stale, synced_pos FROM e2ee_remote_device_lists WHERE user_id = $1`,
		user.String()).Scan(&stale, &synced)
	cached := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("loading the cached device list of %s: %w", user, err)
	}
	switch {
	case !shared:
		if cached {
			if err := s.db.WriteTx(ctx, func(tx *storage.Tx) error { return forget(ctx, tx, user) }); err != nil {
				return 0, err
			}
		}
		return cacheUntracked, nil
	case !cached || stale != 0 || synced < since:
		return cacheNeedsResync, nil
	}
	return cacheFresh, nil
}

// serveCached adds the cached keys of user to resp; false when nothing is
// cached.
func (s *Service) serveCached(ctx context.Context, user id.UserID, devices []id.DeviceID, resp *QueryResp) (bool, error) {
	var master, selfSigning string
	err := s.db.QueryRowContext(ctx, `SELECT master_key, self_signing_key FROM e2ee_remote_device_lists WHERE user_id = $1`,
		user.String()).Scan(&master, &selfSigning)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("loading the cached device list of %s: %w", user, err)
	}
	want := map[id.DeviceID]bool{}
	for _, d := range devices {
		want[d] = true
	}
	rows, err := s.db.QueryContext(ctx, `SELECT device_id, display_name, key_json FROM e2ee_remote_devices
		WHERE user_id = $1 ORDER BY device_id`, user.String())
	if err != nil {
		return false, fmt.Errorf("loading the cached devices of %s: %w", user, err)
	}
	defer rows.Close()
	devs := map[id.DeviceID]json.RawMessage{}
	for rows.Next() {
		var dev id.DeviceID
		var name, raw string
		if err := rows.Scan(&dev, &name, &raw); err != nil {
			return false, err
		}
		if len(want) > 0 && !want[dev] {
			continue
		}
		devs[dev] = withUnsigned(json.RawMessage(raw), name)
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	resp.DeviceKeys[user] = devs
	if master != "" {
		resp.MasterKeys[user] = json.RawMessage(master)
	}
	if selfSigning != "" {
		resp.SelfSigningKeys[user] = json.RawMessage(selfSigning)
	}
	return true, nil
}
