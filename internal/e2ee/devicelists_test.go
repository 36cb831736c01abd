package e2ee_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

const (
	carol = id.UserID("@carol:remote")
	dave  = id.UserID("@dave:remote")
)

// fakeRemote answers the federation requests of the server "remote":
// /user/devices from devices, /user/keys/query with an empty answer, and
// counts both.
type fakeRemote struct {
	mu           sync.Mutex
	devices      map[id.UserID]*e2ee.UserDevicesResp
	devicesCalls int
	queryCalls   int
	down         bool
}

func (f *fakeRemote) Do(_ context.Context, dest, method, path string, _ url.Values, _, out any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if dest != "remote" {
		return fmt.Errorf("unexpected destination %s", dest)
	}
	if f.down {
		return errors.New("connection refused")
	}
	switch {
	case method == "GET" && len(path) > len("/_matrix/federation/v1/user/devices/"):
		f.devicesCalls++
		user, err := url.PathUnescape(path[len("/_matrix/federation/v1/user/devices/"):])
		if err != nil {
			return err
		}
		resp := f.devices[id.UserID(user)]
		if resp == nil {
			return fmt.Errorf("no user %s", user)
		}
		raw, _ := json.Marshal(resp)
		return json.Unmarshal(raw, out)
	case method == "POST" && path == "/_matrix/federation/v1/user/keys/query":
		f.queryCalls++
		return json.Unmarshal([]byte(`{"device_keys":{}}`), out)
	}
	return fmt.Errorf("unexpected %s %s", method, path)
}

func (f *fakeRemote) set(user id.UserID, streamID int64, devs ...id.DeviceID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &e2ee.UserDevicesResp{UserID: user, StreamID: streamID, Devices: []e2ee.Device{}}
	for _, d := range devs {
		resp.Devices = append(resp.Devices, e2ee.Device{DeviceID: d, DisplayName: "dev " + d.String(), Keys: devKeys(user, d)})
	}
	f.devices[user] = resp
}

func (f *fakeRemote) calls() (devices, query int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.devicesCalls, f.queryCalls
}

// setMember records user's membership of room as the current state, at a
// new stream position, as the room package would.
func setMember(t *testing.T, db *storage.DB, room id.RoomID, user id.UserID, membership string) {
	t.Helper()
	ctx := context.Background()
	err := db.WriteTx(ctx, func(tx *storage.Tx) error {
		pos, err := storage.NextID(ctx, tx, "stream", 1)
		if err != nil {
			return err
		}
		eventID := fmt.Sprintf("$m%d", pos)
		if _, err := tx.ExecContext(ctx, `INSERT INTO events (event_nid, event_id, room_id, type, state_key, sender, depth,
			origin_server_ts, stream_pos, snapshot_nid, json) VALUES ($1, $2, $3, 'm.room.member', $4, $4, $1, 0, $1, 0, '{}')`,
			pos, eventID, room.String(), user.String()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO current_state (room_id, type, state_key, event_nid, event_id, membership)
			VALUES ($1, 'm.room.member', $2, $3, $4, $5) ON CONFLICT (room_id, type, state_key)
			DO UPDATE SET event_nid = excluded.event_nid, event_id = excluded.event_id, membership = excluded.membership`,
			room.String(), user.String(), pos, eventID, membership); err != nil {
			return err
		}
		if user.Homeserver() != "test" {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO local_memberships (user_id, room_id, membership, event_id, stream_pos)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id)
			DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_pos = excluded.stream_pos`,
			user.String(), room.String(), membership, eventID, pos)
		return err
	})
	if err != nil {
		t.Fatalf("setting %s's membership of %s: %v", user, room, err)
	}
}

func deviceListEDU(user id.UserID, dev id.DeviceID, streamID int64, prev []int64, deleted bool) json.RawMessage {
	u := e2ee.DeviceListUpdate{UserID: user, DeviceID: dev, StreamID: streamID, PrevID: prev, Deleted: deleted}
	if !deleted {
		u.Keys = devKeys(user, dev)
	}
	raw, _ := json.Marshal(u)
	return raw
}

func cachedRows(t *testing.T, db *storage.DB, user id.UserID) (lists, devices int) {
	t.Helper()
	ctx := context.Background()
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2ee_remote_device_lists WHERE user_id = $1`, user.String()).Scan(&lists); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2ee_remote_devices WHERE user_id = $1`, user.String()).Scan(&devices); err != nil {
		t.Fatal(err)
	}
	return lists, devices
}

// TestRemoteDeviceListCache walks one remote user's device list through
// first use, chained updates, a gap, cross-signing keys, leaving and
// rejoining, checking after each step what /keys/query answers and which
// federation requests it took.
func TestRemoteDeviceListCache(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		fake := &fakeRemote{devices: map[id.UserID]*e2ee.UserDevicesResp{}}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		s := e2ee.New(db, notifier.New(), "test", log, e2ee.WithFederation(nil, fake))
		room := id.RoomID("!r:test")
		setMember(t, db, room, alice, "join")
		setMember(t, db, room, carol, "join")
		fake.set(carol, 10, "C1")
		edu := func(content json.RawMessage) func() error {
			return func() error { return s.ReceiveDeviceListUpdate(ctx, "remote", content) }
		}
		steps := []struct {
			name        string
			act         func() error
			wantDevices []id.DeviceID
			wantResyncs int // /user/devices calls so far
			wantQueries int // /user/keys/query calls so far
		}{
			{"first use resyncs", nil, []id.DeviceID{"C1"}, 1, 0},
			{"second use is cached", nil, []id.DeviceID{"C1"}, 1, 0},
			{"chained new device", edu(deviceListEDU(carol, "C2", 11, []int64{10}, false)), []id.DeviceID{"C1", "C2"}, 1, 0},
			{"chained deletion", edu(deviceListEDU(carol, "C1", 12, []int64{11}, true)), []id.DeviceID{"C2"}, 1, 0},
			{"replayed update ignored", edu(deviceListEDU(carol, "C1", 11, []int64{10}, false)), []id.DeviceID{"C2"}, 1, 0},
			{"empty prev_id applies", edu(deviceListEDU(carol, "C4", 13, nil, false)), []id.DeviceID{"C2", "C4"}, 1, 0},
			{"gap resyncs", func() error {
				fake.set(carol, 20, "C2", "C3")
				return s.ReceiveDeviceListUpdate(ctx, "remote", deviceListEDU(carol, "C3", 20, []int64{15}, false))
			}, []id.DeviceID{"C2", "C3"}, 2, 0},
			{"chain resumes after the resync", edu(deviceListEDU(carol, "C5", 21, []int64{20}, false)), []id.DeviceID{"C2", "C3", "C5"}, 2, 0},
			{"stale list with the server down asks the server", func() error {
				if err := s.ReceiveDeviceListUpdate(ctx, "remote", deviceListEDU(carol, "C6", 30, []int64{25}, false)); err != nil {
					return err
				}
				fake.mu.Lock()
				fake.down = true
				fake.mu.Unlock()
				return nil
			}, nil, 2, 0},
			{"back up", func() error {
				fake.mu.Lock()
				fake.down = false
				fake.mu.Unlock()
				fake.set(carol, 30, "C6")
				return nil
			}, []id.DeviceID{"C6"}, 3, 0},
			{"leaving drops the cache and asks the server", func() error {
				setMember(t, db, room, carol, "leave")
				return nil
			}, []id.DeviceID{}, 3, 1},
			{"rejoining resyncs", func() error {
				setMember(t, db, room, carol, "join")
				return nil
			}, []id.DeviceID{"C6"}, 4, 1},
			{"a list synced before the current stretch of sharing is refetched", func() error {
				setMember(t, db, room, alice, "leave")
				setMember(t, db, room, alice, "join")
				return nil
			}, []id.DeviceID{"C6"}, 5, 1},
		}
		for _, st := range steps {
			if st.act != nil {
				if err := st.act(); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
			}
			resp, err := s.Query(ctx, alice, map[id.UserID][]id.DeviceID{carol: nil})
			if err != nil {
				t.Fatalf("%s: query: %v", st.name, err)
			}
			var got []id.DeviceID
			for d := range resp.DeviceKeys[carol] {
				got = append(got, d)
			}
			slices.Sort(got)
			if st.wantDevices != nil && !slices.Equal(got, st.wantDevices) && !(len(got) == 0 && len(st.wantDevices) == 0) {
				t.Errorf("%s: devices %v, want %v", st.name, got, st.wantDevices)
			}
			if st.wantDevices == nil && len(resp.Failures) == 0 {
				t.Errorf("%s: no failure reported for an unreachable server", st.name)
			}
			if r, q := fake.calls(); r != st.wantResyncs || q != st.wantQueries {
				t.Errorf("%s: %d resyncs and %d key queries, want %d and %d", st.name, r, q, st.wantResyncs, st.wantQueries)
			}
		}
		// A device list EDU reaches alice's sync as a change of carol.
		before, _ := db.CurrentID(ctx, "stream")
		if err := s.ReceiveDeviceListUpdate(ctx, "remote", deviceListEDU(carol, "C7", 31, []int64{30}, false)); err != nil {
			t.Fatal(err)
		}
		after, _ := db.CurrentID(ctx, "stream")
		if changed, _, err := s.DeviceListChanges(ctx, alice, before, after); err != nil || !slices.Contains(changed, carol) {
			t.Errorf("alice's device list changes after an EDU: %v, %v", changed, err)
		}
	})
}

// TestRemoteDeviceListUntracked checks that users sharing no room with a
// local user are never cached and always asked for.
func TestRemoteDeviceListUntracked(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		fake := &fakeRemote{devices: map[id.UserID]*e2ee.UserDevicesResp{}}
		s := e2ee.New(db, notifier.New(), "test", slog.New(slog.NewTextHandler(io.Discard, nil)), e2ee.WithFederation(nil, fake))
		fake.set(dave, 1, "D1")
		if err := s.ReceiveDeviceListUpdate(ctx, "remote", deviceListEDU(dave, "D2", 2, []int64{1}, false)); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := s.Query(ctx, alice, map[id.UserID][]id.DeviceID{dave: nil}); err != nil {
				t.Fatal(err)
			}
		}
		if r, q := fake.calls(); r != 0 || q != 2 {
			t.Errorf("%d resyncs and %d key queries, want 0 and 2", r, q)
		}
		if lists, devs := cachedRows(t, db, dave); lists != 0 || devs != 0 {
			t.Errorf("an untracked user is cached: %d lists, %d devices", lists, devs)
		}
	})
}

// TestRemoteUpdatesChecked checks that EDUs about other servers' users or
// with keys of another device are refused, and that m.signing_key_update
// replaces the cached cross-signing keys.
func TestRemoteUpdatesChecked(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		fake := &fakeRemote{devices: map[id.UserID]*e2ee.UserDevicesResp{}}
		s := e2ee.New(db, notifier.New(), "test", slog.New(slog.NewTextHandler(io.Discard, nil)), e2ee.WithFederation(nil, fake))
		room := id.RoomID("!r:test")
		setMember(t, db, room, alice, "join")
		setMember(t, db, room, carol, "join")
		fake.set(carol, 1, "C1")
		if _, err := s.Query(ctx, alice, map[id.UserID][]id.DeviceID{carol: nil}); err != nil {
			t.Fatal(err)
		}
		otherKeys, _ := json.Marshal(e2ee.DeviceListUpdate{UserID: carol, DeviceID: "C2", StreamID: 2, PrevID: []int64{1}, Keys: devKeys(carol, "C3")})
		tests := []struct {
			name    string
			origin  string
			content json.RawMessage
		}{
			{"another server's user", "evil", deviceListEDU(carol, "C2", 2, []int64{1}, false)},
			{"a local user", "test", deviceListEDU(alice, "A2", 2, []int64{1}, false)},
			{"keys of another device", "remote", otherKeys},
			{"not JSON", "remote", json.RawMessage(`[`)},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if err := s.ReceiveDeviceListUpdate(ctx, tc.origin, tc.content); err == nil {
					t.Errorf("accepted")
				}
			})
		}
		if _, devs := cachedRows(t, db, carol); devs != 1 {
			t.Errorf("%d cached devices after refused updates, want 1", devs)
		}
		master := json.RawMessage(`{"user_id":"@carol:remote","usage":["master"],"keys":{"ed25519:M":"M"}}`)
		upd, _ := json.Marshal(e2ee.SigningKeyUpdate{UserID: carol, MasterKey: master})
		if err := s.ReceiveSigningKeyUpdate(ctx, "evil", upd); err == nil {
			t.Errorf("a signing key update from another server was accepted")
		}
		if err := s.ReceiveSigningKeyUpdate(ctx, "remote", upd); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Query(ctx, alice, map[id.UserID][]id.DeviceID{carol: nil})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.MasterKeys[carol]); got != string(master) {
			t.Errorf("master key %s, want %s", got, master)
		}
		if r, q := fake.calls(); r != 1 || q != 0 {
			t.Errorf("%d resyncs and %d key queries, want 1 and 0", r, q)
		}
	})
}

// edusSent records the EDUs a Service queues.
type edusSent struct {
	mu   sync.Mutex
	edus []e2ee.DeviceListUpdate
	sks  int
}

func (e *edusSent) EnqueueEDU(_ context.Context, _ []string, eduType string, content json.RawMessage) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch eduType {
	case "m.device_list_update":
		var u e2ee.DeviceListUpdate
		if err := json.Unmarshal(content, &u); err != nil {
			return err
		}
		e.edus = append(e.edus, u)
	case "m.signing_key_update":
		e.sks++
	}
	return nil
}

// TestDeviceListUpdatesSent checks the EDUs other servers cache from: a
// signature of a device goes out as an m.device_list_update carrying it,
// and a change of two devices takes two stream_ids chained by prev_id,
// both before the next change's.
func TestDeviceListUpdatesSent(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		plain := newService(t, db) // creates the devices
		ssk := newTestKey()
		csKey := func(usage, pub string) json.RawMessage {
			raw, _ := json.Marshal(map[string]any{"user_id": bob, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + pub: pub}})
			return raw
		}
		if err := plain.UploadCrossSigning(ctx, bob, map[string]json.RawMessage{
			"master": csKey("master", newTestKey().pub), "self_signing": csKey("self_signing", ssk.pub)}); err != nil {
			t.Fatal(err)
		}
		sent := &edusSent{}
		s := e2ee.New(db, notifier.New(), "test", slog.New(slog.NewTextHandler(io.Discard, nil)), e2ee.WithFederation(sent, &fakeRemote{}))
		room := id.RoomID("!r:test")
		setMember(t, db, room, bob, "join")
		setMember(t, db, room, carol, "join")
		for _, d := range []id.DeviceID{"B1", "B2"} {
			if _, err := s.Upload(ctx, bob, d, devKeys(bob, d), nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		signed, sig := ssk.sign(t, bob, "ed25519:"+ssk.pub, devKeys(bob, "B1"))
		failures, err := s.UploadSignatures(ctx, bob, map[id.UserID]map[string]json.RawMessage{bob: {"B1": signed}})
		if err != nil || len(failures) != 0 {
			t.Fatalf("uploading a signature: %v, %v", failures, err)
		}
		// DeleteDevices runs after users deleted the devices; a device
		// still listed but without keys goes out as a device, not deleted.
		if _, err := db.ExecContext(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id IN ('B1', 'B2')`, bob.String()); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteDevices(ctx, bob, []id.DeviceID{"B1", "B2"}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, 'B3', '', 0)`, bob.String()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Upload(ctx, bob, "B3", devKeys(bob, "B3"), nil, nil); err != nil {
			t.Fatal(err)
		}
		sent.mu.Lock()
		defer sent.mu.Unlock()
		type summary struct {
			dev     id.DeviceID
			deleted bool
		}
		var got []summary
		for i, u := range sent.edus {
			got = append(got, summary{u.DeviceID, u.Deleted})
			if i > 0 && (len(u.PrevID) != 1 || u.PrevID[0] != sent.edus[i-1].StreamID || u.StreamID <= u.PrevID[0]) {
				t.Errorf("update %d (%s): stream_id %d, prev_id %v; want to chain after %d", i, u.DeviceID, u.StreamID, u.PrevID, sent.edus[i-1].StreamID)
			}
		}
		want := []summary{{"B1", false}, {"B2", false}, {"B1", false}, {"B1", true}, {"B2", true}, {"B3", false}}
		if !slices.Equal(got, want) {
			t.Fatalf("updates sent %v, want %v", got, want)
		}
		var keys struct {
			Signatures map[id.UserID]map[string]string `json:"signatures"`
		}
		if err := json.Unmarshal(sent.edus[2].Keys, &keys); err != nil || keys.Signatures[bob]["ed25519:"+ssk.pub] != sig {
			t.Errorf("the update for the signed device carries %s, want the new signature", sent.edus[2].Keys)
		}
		if sent.sks != 0 {
			t.Errorf("%d signing key updates for a device signature", sent.sks)
		}
	})
}

// TestRemoteDeviceListsInOneQuery checks that one query of many tracked
// and untracked remote users resyncs each tracked list once and asks the
// server only about the untracked users.
func TestRemoteDeviceListsInOneQuery(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		fake := &fakeRemote{devices: map[id.UserID]*e2ee.UserDevicesResp{}}
		s := e2ee.New(db, notifier.New(), "test", slog.New(slog.NewTextHandler(io.Discard, nil)), e2ee.WithFederation(nil, fake))
		room := id.RoomID("!r:test")
		setMember(t, db, room, alice, "join")
		req := map[id.UserID][]id.DeviceID{dave: nil}
		for i := range 20 {
			u := id.UserID(fmt.Sprintf("@u%d:remote", i))
			setMember(t, db, room, u, "join")
			fake.set(u, int64(i+1), "D1", "D2")
			req[u] = nil
		}
		for range 2 {
			resp, err := s.Query(ctx, alice, req)
			if err != nil {
				t.Fatal(err)
			}
			for u := range req {
				if u != dave && len(resp.DeviceKeys[u]) != 2 {
					t.Errorf("%s: %d devices, want 2", u, len(resp.DeviceKeys[u]))
				}
			}
		}
		if r, q := fake.calls(); r != 20 || q != 2 {
			t.Errorf("%d resyncs and %d key queries, want 20 and 2", r, q)
		}
	})
}
