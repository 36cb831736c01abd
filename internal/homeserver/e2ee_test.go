//go:build goolm

package homeserver_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// e2eeClient is a mautrix client with an OlmMachine (goolm, in-memory
// stores) that follows /sync the way a real client does: to-device events,
// device lists and key counts go to the machine, state to its state store,
// and encrypted timeline events are decrypted.
type e2eeClient struct {
	t         *testing.T
	cli       *mautrix.Client
	mach      *crypto.OlmMachine
	state     mautrix.StateStore
	since     string
	decrypted []string
	// pending are encrypted events whose room key has not arrived yet
	// (over federation the event may come before the to-device message
	// carrying its key); each sync tries them again.
	pending  []*event.Event
	lastSync *mautrix.RespSync
}

func newE2EEClient(t *testing.T, cli *mautrix.Client) *e2eeClient {
	t.Helper()
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	st := mautrix.NewMemoryStateStore()
	mach := crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), st.(crypto.StateStore))
	if err := mach.Load(ctx); err != nil {
		t.Fatalf("loading olm machine of %s: %v", cli.UserID, err)
	}
	if err := mach.ShareKeys(ctx, -1); err != nil {
		t.Fatalf("uploading keys of %s: %v", cli.UserID, err)
	}
	return &e2eeClient{t: t, cli: cli, mach: mach, state: st}
}

// sync runs one /sync (long-polling up to timeout) and processes it.
func (c *e2eeClient) sync(timeout int) {
	c.t.Helper()
	ctx := context.Background()
	resp, err := c.cli.SyncRequest(ctx, timeout, c.since, "", false, "")
	if err != nil {
		c.t.Fatalf("sync of %s: %v", c.cli.UserID, err)
	}
	c.lastSync = resp
	c.mach.ProcessSyncResponse(ctx, resp, c.since)
	for roomID, jr := range resp.Rooms.Join {
		for _, evt := range append(jr.State.Events, jr.Timeline.Events...) {
			evt.RoomID = roomID
			_ = evt.Content.ParseRaw(evt.Type)
			if evt.StateKey != nil {
				mautrix.UpdateStateStore(ctx, c.state, evt)
				continue
			}
			if evt.Type == event.EventEncrypted {
				c.pending = append(c.pending, evt)
			}
		}
	}
	var still []*event.Event
	for _, evt := range c.pending {
		dec, err := c.mach.DecryptMegolmEvent(ctx, evt)
		if err != nil {
			still = append(still, evt)
			continue
		}
		if msg, ok := dec.Content.Parsed.(*event.MessageEventContent); ok {
			c.decrypted = append(c.decrypted, msg.Body)
		}
	}
	c.pending = still
	c.since = resp.NextBatch
}

// syncUntil syncs until cond holds, failing after a deadline.
func (c *e2eeClient) syncUntil(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: timed out waiting for %s", c.cli.UserID, what)
		}
		c.sync(1000)
	}
}

// send encrypts body for the room's members and sends it.
func (c *e2eeClient) send(roomID id.RoomID, members []id.UserID, body string) {
	c.t.Helper()
	ctx := context.Background()
	if err := c.mach.ShareGroupSession(ctx, roomID, members); err != nil {
		c.t.Fatalf("%s sharing the group session: %v", c.cli.UserID, err)
	}
	enc, err := c.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: body})
	if err != nil {
		c.t.Fatalf("%s encrypting: %v", c.cli.UserID, err)
	}
	if _, err := c.cli.SendMessageEvent(ctx, roomID, event.EventEncrypted, enc); err != nil {
		c.t.Fatalf("%s sending: %v", c.cli.UserID, err)
	}
}

// encryptedRoom has alice create an encrypted room and bob join it (via
// alice's server when they differ).
func encryptedRoom(t *testing.T, alice, bob *mautrix.Client, via string) id.RoomID {
	t.Helper()
	ctx := context.Background()
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	if err != nil {
		t.Fatalf("creating the room: %v", err)
	}
	if _, err := alice.InviteUser(ctx, created.RoomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatalf("inviting bob: %v", err)
	}
	var req *mautrix.ReqJoinRoom
	if via != "" {
		req = &mautrix.ReqJoinRoom{Via: []string{via}}
	}
	waitFor(t, "bob joins", func() (bool, error) {
		_, err := bob.JoinRoom(ctx, created.RoomID.String(), req)
		return err == nil, err
	})
	return created.RoomID
}

// exchange checks that alice and bob decrypt each other's messages.
func exchange(t *testing.T, a, b *e2eeClient, roomID id.RoomID) {
	t.Helper()
	members := []id.UserID{a.cli.UserID, b.cli.UserID}
	a.sync(0)
	b.sync(0)
	// Each must see the other joined before sharing keys with them.
	a.syncUntil("bob's join", func() bool {
		m, _ := a.state.GetMember(context.Background(), roomID, b.cli.UserID)
		return m != nil && m.Membership == event.MembershipJoin
	})
	a.send(roomID, members, "hello bob")
	b.syncUntil("alice's message", func() bool { return slices.Contains(b.decrypted, "hello bob") })
	b.send(roomID, members, "hello alice")
	a.syncUntil("bob's message", func() bool { return slices.Contains(a.decrypted, "hello alice") })
}

func TestEncryptedRoomDecryptsBothWays(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		roomID := encryptedRoom(t, alice, bob, "")
		a, b := newE2EEClient(t, alice), newE2EEClient(t, bob)
		a.sync(0)
		if n := a.lastSync.DeviceOTKCount.SignedCurve25519; n == 0 {
			t.Errorf("alice's device_one_time_keys_count has no signed_curve25519 keys")
		}
		exchange(t, a, b, roomID)

		// A new device of bob gets the keys of messages sent after it
		// appeared: alice sees it in device_lists.changed and shares the
		// next session with it.
		bob2 := srv.Login(bob.UserID, "password-"+bob.UserID.Localpart())
		b2 := newE2EEClient(t, bob2)
		b2.sync(0)
		// The login and the key upload are two changes, each in
		// device_lists.changed: the machine knows the device once it has
		// queried after the second.
		ctx := context.Background()
		a.syncUntil("bob's new device known through device_lists.changed", func() bool {
			devs, _ := a.mach.CryptoStore.GetDevices(ctx, bob.UserID)
			_, ok := devs[bob2.DeviceID]
			return ok
		})
		if err := a.mach.CryptoStore.RemoveOutboundGroupSession(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		a.send(roomID, []id.UserID{alice.UserID, bob.UserID}, "hello new device")
		b2.syncUntil("the message for the new device", func() bool { return slices.Contains(b2.decrypted, "hello new device") })

		// Once bob shares no room with alice, he is in device_lists.left.
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		a.syncUntil("bob in device_lists.left", func() bool {
			return a.lastSync != nil && slices.Contains(a.lastSync.DeviceLists.Left, bob.UserID)
		})
	})
}

func TestToDeviceAtLeastOnce(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		start, err := bob.SyncRequest(ctx, 0, "", "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		req := &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			bob.UserID: {bob.DeviceID: {Raw: map[string]any{"n": 1}}},
		}}
		evType := event.Type{Type: "org.example.ping", Class: event.ToDeviceEventType}
		// The same transaction twice delivers once.
		for range 2 {
			if _, err := alice.MakeRequest(ctx, "PUT", alice.BuildClientURL("v3", "sendToDevice", evType.Type, "txn1"), req, nil); err != nil {
				t.Fatalf("sendToDevice: %v", err)
			}
		}
		first, err := bob.SyncRequest(ctx, 5000, start.NextBatch, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(first.ToDevice.Events) != 1 || first.ToDevice.Events[0].Sender != alice.UserID {
			t.Fatalf("first sync: %d to-device events, want 1 from alice", len(first.ToDevice.Events))
		}
		// Not acknowledged yet: the same since token gets it again.
		again, err := bob.SyncRequest(ctx, 0, start.NextBatch, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(again.ToDevice.Events) != 1 {
			t.Fatalf("repeated sync: %d to-device events, want the unacknowledged 1", len(again.ToDevice.Events))
		}
		// Syncing from the next token acknowledges it.
		acked, err := bob.SyncRequest(ctx, 0, again.NextBatch, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(acked.ToDevice.Events) != 0 {
			t.Fatalf("after acknowledgement: %d to-device events, want 0", len(acked.ToDevice.Events))
		}
	})
}

func TestKeyBackupRoundTrip(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		url := func(parts ...any) string { return alice.BuildClientURL(append([]any{"v3", "room_keys"}, parts...)...) }
		if _, err := alice.MakeRequest(ctx, "GET", url("version"), nil, nil); !errors.Is(err, mautrix.MNotFound) {
			t.Fatalf("GET version with no backup: %v, want M_NOT_FOUND", err)
		}
		var created struct{ Version string }
		authData := map[string]any{"public_key": "abc"}
		if _, err := alice.MakeRequest(ctx, "POST", url("version"),
			map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": authData}, &created); err != nil {
			t.Fatalf("creating a backup: %v", err)
		}
		roomID := "!room:localhost"
		key := func(idx int) map[string]any {
			return map[string]any{"first_message_index": idx, "forwarded_count": 0, "is_verified": false,
				"session_data": map[string]any{"ciphertext": "c", "ephemeral": "e", "mac": "m", "idx": idx}}
		}
		var upd struct {
			ETag  string
			Count int
		}
		body := map[string]any{"rooms": map[string]any{roomID: map[string]any{"sessions": map[string]any{"s1": key(3), "s2": key(0)}}}}
		if _, err := alice.MakeFullRequest(ctx, mautrix.FullRequest{Method: "PUT", URL: url("keys") + "?version=" + created.Version,
			RequestJSON: body, ResponseJSON: &upd}); err != nil {
			t.Fatalf("backing up keys: %v", err)
		}
		if upd.Count != 2 {
			t.Errorf("count after upload: %d, want 2", upd.Count)
		}
		etag := upd.ETag
		// A worse key (higher first_message_index) does not replace s1.
		if _, err := alice.MakeFullRequest(ctx, mautrix.FullRequest{Method: "PUT", URL: url("keys", roomID, "s1") + "?version=" + created.Version,
			RequestJSON: key(9), ResponseJSON: &upd}); err != nil {
			t.Fatalf("backing up one key: %v", err)
		}
		if upd.ETag != etag {
			t.Errorf("etag changed to %s on a worse key", upd.ETag)
		}
		var got struct {
			Sessions map[string]struct {
				FirstMessageIndex int `json:"first_message_index"`
			}
		}
		if _, err := alice.MakeFullRequest(ctx, mautrix.FullRequest{Method: "GET", URL: url("keys", roomID) + "?version=" + created.Version,
			ResponseJSON: &got}); err != nil {
			t.Fatalf("restoring keys: %v", err)
		}
		if len(got.Sessions) != 2 || got.Sessions["s1"].FirstMessageIndex != 3 {
			t.Errorf("restored %+v, want s1 at index 3 and s2", got.Sessions)
		}
		// A new version makes the old one stale for uploads.
		var second struct{ Version string }
		if _, err := alice.MakeRequest(ctx, "POST", url("version"),
			map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": authData}, &second); err != nil {
			t.Fatal(err)
		}
		_, err := alice.MakeFullRequest(ctx, mautrix.FullRequest{Method: "PUT", URL: url("keys") + "?version=" + created.Version,
			RequestJSON: body})
		if herr, ok := err.(mautrix.HTTPError); !ok || herr.RespError == nil || herr.RespError.ErrCode != "M_WRONG_ROOM_KEYS_VERSION" {
			t.Errorf("upload to an old version: %v, want M_WRONG_ROOM_KEYS_VERSION", err)
		}
		if _, err := alice.MakeRequest(ctx, "DELETE", url("keys", roomID, "s2")+"?version="+created.Version, nil, &upd); err != nil {
			t.Fatalf("deleting a key: %v", err)
		}
		if upd.Count != 1 {
			t.Errorf("count after delete: %d, want 1", upd.Count)
		}
		if _, err := alice.MakeRequest(ctx, "DELETE", url("version", second.Version), nil, nil); err != nil {
			t.Fatalf("deleting a version: %v", err)
		}
		var cur struct{ Version string }
		if _, err := alice.MakeRequest(ctx, "GET", url("version"), nil, &cur); err != nil || cur.Version != created.Version {
			t.Errorf("current version after delete: %q (%v), want %s", cur.Version, err, created.Version)
		}
	})
}

func TestCrossSigningVisibleToOtherUser(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		a, b := newE2EEClient(t, alice), newE2EEClient(t, bob)
		password := func(cli *mautrix.Client) mautrix.UIACallback {
			return func(uia *mautrix.RespUserInteractive) any {
				return map[string]any{"type": "m.login.password", "session": uia.Session, "password": "password-" + cli.UserID.Localpart(),
					"identifier": map[string]any{"type": "m.id.user", "user": cli.UserID.String()}}
			}
		}
		for _, c := range []*e2eeClient{a, b} {
			keys, err := c.mach.GenerateCrossSigningKeys()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.mach.PublishCrossSigningKeys(ctx, keys, password(c.cli)); err != nil {
				t.Fatalf("publishing cross-signing keys of %s: %v", c.cli.UserID, err)
			}
			if err := c.mach.SignOwnDevice(ctx, c.mach.OwnIdentity()); err != nil {
				t.Fatalf("signing own device of %s: %v", c.cli.UserID, err)
			}
		}
		// A second upload of other keys needs the password.
		again, _ := a.mach.GenerateCrossSigningKeys()
		if err := a.mach.PublishCrossSigningKeys(ctx, again, nil); err == nil {
			t.Errorf("replacing cross-signing keys without UIA succeeded")
		}

		bobKeys, err := a.mach.GetCrossSigningPublicKeys(ctx, bob.UserID)
		if err != nil || bobKeys == nil {
			t.Fatalf("alice fetching bob's cross-signing keys: %v", err)
		}
		if err := a.mach.SignUser(ctx, bob.UserID, bobKeys.MasterKey); err != nil {
			t.Fatalf("alice signing bob: %v", err)
		}
		q, err := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		master := q.MasterKeys[bob.UserID]
		if len(master.Signatures[alice.UserID]) == 0 {
			t.Errorf("alice does not see her signature of bob's master key: %+v", master.Signatures)
		}
		dev := q.DeviceKeys[bob.UserID][bob.DeviceID]
		if len(dev.Signatures[bob.UserID]) < 2 {
			t.Errorf("bob's device carries %d of bob's signatures, want its own and the self-signing key's", len(dev.Signatures[bob.UserID]))
		}
		if _, ok := q.SelfSigningKeys[bob.UserID]; !ok {
			t.Errorf("no self-signing key of bob")
		}
		if _, ok := q.UserSigningKeys[bob.UserID]; ok {
			t.Errorf("alice sees bob's user-signing key")
		}
	})
}

func TestEncryptedRoomAcrossFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		roomID := encryptedRoom(t, alice, bob, hs[0].Config.ServerName)
		a, b := newE2EEClient(t, alice), newE2EEClient(t, bob)
		exchange(t, a, b, roomID)

		// A new device of bob reaches alice's server as a device list
		// update, and gets the next session.
		bob2 := hs[1].Login(bob.UserID, "password-"+bob.UserID.Localpart())
		b2 := newE2EEClient(t, bob2)
		b2.sync(0)
		// The login and the key upload are two changes, each in
		// device_lists.changed: the machine knows the device once it has
		// queried after the second.
		ctx := context.Background()
		a.syncUntil("bob's new device known through device_lists.changed", func() bool {
			devs, _ := a.mach.CryptoStore.GetDevices(ctx, bob.UserID)
			_, ok := devs[bob2.DeviceID]
			return ok
		})
		if err := a.mach.CryptoStore.RemoveOutboundGroupSession(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		a.send(roomID, []id.UserID{alice.UserID, bob.UserID}, "hello new device")
		devs, _ := a.mach.CryptoStore.GetDevices(ctx, bob.UserID)
		if _, ok := devs[bob2.DeviceID]; !ok {
			t.Fatalf("alice's machine does not know bob's new device after the device list change")
		}
		b2.syncUntil("the message for the new device", func() bool { return slices.Contains(b2.decrypted, "hello new device") })

		// Bob's cross-signing keys reach alice through user/keys/query,
		// and the m.signing_key_update EDU shows up as a device list change.
		keys, err := b.mach.GenerateCrossSigningKeys()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.mach.PublishCrossSigningKeys(ctx, keys, nil); err != nil {
			t.Fatalf("publishing bob's cross-signing keys: %v", err)
		}
		a.lastSync = nil
		a.syncUntil("bob's cross-signing keys in device_lists.changed", func() bool {
			return a.lastSync != nil && slices.Contains(a.lastSync.DeviceLists.Changed, bob.UserID)
		})
		got, err := a.mach.GetCrossSigningPublicKeys(ctx, bob.UserID)
		if err != nil || got == nil || got.MasterKey != keys.MasterKey.PublicKey() {
			t.Errorf("alice's view of bob's master key: %+v (%v), want %s", got, err, keys.MasterKey.PublicKey())
		}
	})
}

// queryKeys runs /keys/query for all devices of user.
func queryKeys(t *testing.T, cli *mautrix.Client, user id.UserID) *mautrix.RespQueryKeys {
	t.Helper()
	resp, err := cli.QueryKeys(context.Background(), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{user: {}}})
	if err != nil {
		t.Fatalf("%s querying the keys of %s: %v", cli.UserID, user, err)
	}
	return resp
}

// cachedList reads the cache row of user's device list on srv.
func cachedList(t *testing.T, srv *mxtest.Server, user id.UserID) (found bool, streamID, stale int64) {
	t.Helper()
	err := srv.DB().QueryRowContext(context.Background(), `SELECT stream_id, stale FROM e2ee_remote_device_lists WHERE user_id = $1`,
		user.String()).Scan(&streamID, &stale)
	if errors.Is(err, sql.ErrNoRows) {
		return false, 0, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return true, streamID, stale
}

// cachedDevice reports whether srv caches the device of user.
func cachedDevice(srv *mxtest.Server, user id.UserID, dev id.DeviceID) (bool, error) {
	var n int
	err := srv.DB().QueryRowContext(context.Background(), `SELECT COUNT(*) FROM e2ee_remote_devices WHERE user_id = $1 AND device_id = $2`,
		user.String(), dev.String()).Scan(&n)
	return n == 1, err
}

// TestRemoteDeviceListCached checks the cache of a remote user's device
// list end to end: the first query fills it through /user/devices, a new
// device arrives by m.device_list_update and is served while its server is
// down, and a gap in the prev_id chain makes the next query resync.
func TestRemoteDeviceListCached(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		encryptedRoom(t, alice, bob, hs[0].Config.ServerName)
		newE2EEClient(t, bob)
		hasDevices := func(resp *mautrix.RespQueryKeys, devs ...id.DeviceID) bool {
			for _, d := range devs {
				if _, ok := resp.DeviceKeys[bob.UserID][d]; !ok {
					return false
				}
			}
			return true
		}
		if resp := queryKeys(t, alice, bob.UserID); !hasDevices(resp, bob.DeviceID) {
			t.Fatalf("first query: %v, want bob's device %s", resp.DeviceKeys[bob.UserID], bob.DeviceID)
		}
		if found, _, _ := cachedList(t, hs[0], bob.UserID); !found {
			t.Fatalf("the first query left no cached device list of bob")
		}

		// A new device reaches the cache by EDU and is served from it
		// while bob's server is down.
		bob2 := hs[1].Login(bob.UserID, "password-"+bob.UserID.Localpart())
		newE2EEClient(t, bob2)
		waitFor(t, "bob's second device in the cache", func() (bool, error) { return cachedDevice(hs[0], bob.UserID, bob2.DeviceID) })
		hs[1].Down()
		resp := queryKeys(t, alice, bob.UserID)
		hs[1].Up()
		if !hasDevices(resp, bob.DeviceID, bob2.DeviceID) || len(resp.Failures) != 0 {
			t.Fatalf("query with bob's server down: devices %v, failures %v; want both devices from the cache",
				resp.DeviceKeys[bob.UserID], resp.Failures)
		}

		// Lose the update of the second device, as if its EDU never came:
		// the next update's prev_id names a stream_id this server has not
		// seen, which marks the list stale, and the next query resyncs.
		_, streamID, _ := cachedList(t, hs[0], bob.UserID)
		ctx := context.Background()
		if _, err := hs[0].DB().ExecContext(ctx, `DELETE FROM e2ee_remote_devices WHERE user_id = $1 AND device_id = $2`,
			bob.UserID.String(), bob2.DeviceID.String()); err != nil {
			t.Fatal(err)
		}
		if _, err := hs[0].DB().ExecContext(ctx, `UPDATE e2ee_remote_device_lists SET stream_id = $2 WHERE user_id = $1`,
			bob.UserID.String(), streamID-1); err != nil {
			t.Fatal(err)
		}
		bob3 := hs[1].Login(bob.UserID, "password-"+bob.UserID.Localpart())
		newE2EEClient(t, bob3)
		// Either the list is seen stale, or something already resynced it:
		// only a resync brings back the device removed above.
		sawStale := false
		waitFor(t, "the gap to mark bob's list stale", func() (bool, error) {
			if _, _, stale := cachedList(t, hs[0], bob.UserID); stale == 1 {
				sawStale = true
				return true, nil
			}
			return cachedDevice(hs[0], bob.UserID, bob2.DeviceID)
		})
		if ok, _ := cachedDevice(hs[0], bob.UserID, bob3.DeviceID); sawStale && ok {
			t.Errorf("an update after a gap was applied")
		}
		if resp := queryKeys(t, alice, bob.UserID); !hasDevices(resp, bob.DeviceID, bob2.DeviceID, bob3.DeviceID) {
			t.Errorf("query after the gap: %v, want all three of bob's devices", resp.DeviceKeys[bob.UserID])
		}
		var remoteStream int64
		if err := hs[1].DB().QueryRowContext(ctx, `SELECT stream_id FROM e2ee_device_list_streams WHERE user_id = $1`,
			bob.UserID.String()).Scan(&remoteStream); err != nil {
			t.Fatal(err)
		}
		if found, got, stale := cachedList(t, hs[0], bob.UserID); !found || stale != 0 || got != remoteStream {
			t.Errorf("after the resync: cached %v, stream_id %d, stale %d; want stream_id %d, not stale", found, got, stale, remoteStream)
		}
		for _, d := range []id.DeviceID{bob.DeviceID, bob2.DeviceID, bob3.DeviceID} {
			if ok, err := cachedDevice(hs[0], bob.UserID, d); !ok || err != nil {
				t.Errorf("device %s not cached after the resync (%v)", d, err)
			}
		}
	})
}

// keysChanges calls GET /keys/changes.
func keysChanges(t *testing.T, cli *mautrix.Client, from, to string) (changed, left []id.UserID) {
	t.Helper()
	var resp struct {
		Changed []id.UserID `json:"changed"`
		Left    []id.UserID `json:"left"`
	}
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "keys", "changes"}, map[string]string{"from": from, "to": to})
	if _, err := cli.MakeRequest(context.Background(), "GET", u, nil, &resp); err != nil {
		t.Fatalf("/keys/changes from %s to %s: %v", from, to, err)
	}
	return resp.Changed, resp.Left
}

// TestKeysChanges drives GET /keys/changes across two servers: a remote
// user's new device, a join and a leave each show up in the window of
// sync tokens that holds them and in no window that does not.
func TestKeysChanges(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		hs := mxtest.Federation(t, engine, 2)
		ctx := context.Background()
		alice, bob, carol := hs[0].Client("alice"), hs[1].Client("bob"), hs[1].Client("carol")
		// bob's keys go up before he shares a room with alice, so that
		// no device list update of his is in flight when t0 is taken.
		newE2EEClient(t, bob)
		roomID := encryptedRoom(t, alice, bob, hs[0].Config.ServerName)
		token := func(since string) string {
			resp, err := alice.SyncRequest(ctx, 0, since, "", false, "")
			if err != nil {
				t.Fatalf("alice's sync: %v", err)
			}
			return resp.NextBatch
		}
		t0 := token("")
		// Poll for a token whose window from `from` satisfies cond.
		until := func(what, from string, cond func(changed, left []id.UserID) bool) string {
			var to string
			waitFor(t, what, func() (bool, error) {
				to = token(from)
				return cond(keysChanges(t, alice, from, to)), nil
			})
			return to
		}

		bob2 := hs[1].Login(bob.UserID, "password-"+bob.UserID.Localpart())
		newE2EEClient(t, bob2)
		// A login and the key upload after it are two changes, which may
		// reach alice's server apart: wait for the keys to be there.
		waitFor(t, "bob's new device keys at alice's server", func() (bool, error) {
			resp, err := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.UserID: mautrix.DeviceIDList{}}})
			if err != nil {
				return false, err
			}
			_, ok := resp.DeviceKeys[bob.UserID][bob2.DeviceID]
			return ok, nil
		})
		t1 := until("bob's new device", t0, func(changed, _ []id.UserID) bool { return slices.Contains(changed, bob.UserID) })
		// alice's server may have fetched the keys itself before bob's
		// server's update for them arrived, and that update is a change
		// of its own: t1 moves past it. A window that repeats a change
		// already reported fails at once, for the token does not move.
		for i := 0; ; i++ {
			next := token(t1)
			changed, left := keysChanges(t, alice, t1, next)
			if !slices.Contains(changed, bob.UserID) && len(left) == 0 {
				break
			}
			if next == t1 || i == 5 {
				t.Fatalf("a window after bob's change: changed %v, left %v", changed, left)
			}
			t1 = next
			time.Sleep(100 * time.Millisecond)
		}

		// carol joins after t1: she is changed in (t1, t2] only.
		if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "carol joins", func() (bool, error) {
			_, err := carol.JoinRoom(ctx, roomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}})
			return err == nil, err
		})
		t2 := until("carol's join", t1, func(changed, _ []id.UserID) bool { return slices.Contains(changed, carol.UserID) })
		if changed, _ := keysChanges(t, alice, t0, t1); slices.Contains(changed, carol.UserID) {
			t.Errorf("carol, who joined after t1, is in changed up to t1: %v", changed)
		}

		// bob leaves: he is in left, not changed, in (t2, t3].
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		t3 := until("bob's leave", t2, func(_, left []id.UserID) bool { return slices.Contains(left, bob.UserID) })
		if changed, _ := keysChanges(t, alice, t2, t3); slices.Contains(changed, bob.UserID) {
			t.Errorf("bob is both left and changed: %v", changed)
		}
		if _, left := keysChanges(t, alice, t1, t2); slices.Contains(left, bob.UserID) {
			t.Errorf("bob is in left before he left: %v", left)
		}

		// Both tokens are required.
		u := alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "keys", "changes"}, map[string]string{"from": t0})
		var httpErr mautrix.HTTPError
		if _, err := alice.MakeRequest(ctx, "GET", u, nil, nil); !errors.As(err, &httpErr) || httpErr.RespError == nil ||
			httpErr.RespError.ErrCode != "M_MISSING_PARAM" {
			t.Errorf("/keys/changes without to: %v, want M_MISSING_PARAM", err)
		}
	})
}

// TestCrossSigningRemoteUser: alice verifies bob, a user of another
// server, by signing his master key with her user-signing key. The
// signature is kept on alice's server and shown to alice alone.
func TestCrossSigningRemoteUser(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoom(ctx, created.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err != nil {
			t.Fatal(err)
		}
		a, b := newE2EEClient(t, alice), newE2EEClient(t, bob)
		for _, c := range []*e2eeClient{a, b} {
			keys, err := c.mach.GenerateCrossSigningKeys()
			if err != nil {
				t.Fatal(err)
			}
			auth := func(uia *mautrix.RespUserInteractive) any {
				return map[string]any{"type": "m.login.password", "session": uia.Session, "password": "password-" + c.cli.UserID.Localpart(),
					"identifier": map[string]any{"type": "m.id.user", "user": c.cli.UserID.String()}}
			}
			if err := c.mach.PublishCrossSigningKeys(ctx, keys, auth); err != nil {
				t.Fatalf("publishing cross-signing keys of %s: %v", c.cli.UserID, err)
			}
		}
		bobKeys, err := a.mach.GetCrossSigningPublicKeys(ctx, bob.UserID)
		if err != nil || bobKeys == nil {
			t.Fatalf("alice fetching bob's cross-signing keys over federation: %v", err)
		}
		if err := a.mach.SignUser(ctx, bob.UserID, bobKeys.MasterKey); err != nil {
			t.Fatalf("alice signing bob's master key: %v", err)
		}
		q, err := alice.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(q.MasterKeys[bob.UserID].Signatures[alice.UserID]) == 0 {
			t.Errorf("alice does not see her signature of bob's master key: %+v", q.MasterKeys[bob.UserID].Signatures)
		}
		carol := hs[0].Client("carol")
		q, err = carol.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{bob.UserID: {}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(q.MasterKeys[bob.UserID].Signatures[alice.UserID]) != 0 {
			t.Errorf("carol sees alice's signature of bob's master key")
		}
	})
}
