//go:build goolm

package homeserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// lists is what a run of incremental syncs reported in device_lists.
type lists struct{ changed, left []id.UserID }

func (l lists) String() string { return fmt.Sprintf("changed %v, left %v", l.changed, l.left) }

// syncLists runs incremental syncs of cli from since until the device
// lists they reported together satisfy cond, and returns those lists and
// the last token.
func syncLists(t *testing.T, cli *mautrix.Client, since, what string, cond func(lists) bool) (lists, string) {
	t.Helper()
	var got lists
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := cli.SyncRequest(context.Background(), 500, since, "", false, "")
		if err != nil {
			t.Fatalf("sync of %s: %v", cli.UserID, err)
		}
		since = resp.NextBatch
		for _, u := range resp.DeviceLists.Changed {
			if !slices.Contains(got.changed, u) {
				got.changed = append(got.changed, u)
			}
		}
		for _, u := range resp.DeviceLists.Left {
			if !slices.Contains(got.left, u) {
				got.left = append(got.left, u)
			}
		}
		if cond(got) {
			return got, since
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s in device_lists; got %v", cli.UserID, what, got)
		}
	}
}

// syncToken returns the next_batch of an initial sync.
func syncToken(t *testing.T, cli *mautrix.Client) string {
	t.Helper()
	resp, err := cli.SyncRequest(context.Background(), 0, "", "", false, "")
	if err != nil {
		t.Fatalf("initial sync of %s: %v", cli.UserID, err)
	}
	return resp.NextBatch
}

func changedHas(users ...id.UserID) func(lists) bool {
	return func(l lists) bool {
		for _, u := range users {
			if !slices.Contains(l.changed, u) {
				return false
			}
		}
		return true
	}
}

func leftHas(user id.UserID) func(lists) bool {
	return func(l lists) bool { return slices.Contains(l.left, user) }
}

// checkKeysChanges checks that /keys/changes over (from, to] agrees.
func checkKeysChanges(t *testing.T, cli *mautrix.Client, from, to, what string, cond func(lists) bool) {
	t.Helper()
	changed, left := keysChanges(t, cli, from, to)
	if l := (lists{changed, left}); !cond(l) {
		t.Errorf("%s: /keys/changes of %s has no %s: %v", what, cli.UserID, what, l)
	}
}

// TestDeviceListsOnJoin: after bob joins a room, his own sync lists
// himself and the members he now shares a room with in
// device_lists.changed, and the members' syncs list him (issue #10).
func TestDeviceListsOnJoin(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		roomID := publicRoom(t, alice, "")
		aliceSince, bobSince := syncToken(t, alice), syncToken(t, bob)
		if _, err := bob.JoinRoom(context.Background(), roomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		_, bobTo := syncLists(t, bob, bobSince, "bob and alice", changedHas(bob.UserID, alice.UserID))
		checkKeysChanges(t, bob, bobSince, bobTo, "bob and alice", changedHas(bob.UserID, alice.UserID))
		_, aliceTo := syncLists(t, alice, aliceSince, "bob", changedHas(bob.UserID))
		checkKeysChanges(t, alice, aliceSince, aliceTo, "bob", changedHas(bob.UserID))
	})
}

// TestDeviceListsFollowDeviceChanges: a new login, a renamed device and a
// deleted device of bob's reach device_lists.changed of alice, who shares
// a room with him, and of bob himself, in /sync and /keys/changes; bob
// leaving their only room puts each in the other's device_lists.left.
func TestDeviceListsFollowDeviceChanges(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		roomID := publicRoom(t, alice, "", bob)
		password := "password-" + bob.UserID.Localpart()
		var bob2 *mautrix.Client
		steps := []struct {
			name string
			do   func()
		}{
			{"new login", func() { bob2 = srv.Login(bob.UserID, password) }},
			{"rename", func() {
				if err := bob.SetDeviceInfo(ctx, bob2.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "bob's phone"}); err != nil {
					t.Fatal(err)
				}
			}},
			{"deletion", func() {
				if _, err := bob2.Logout(ctx); err != nil {
					t.Fatal(err)
				}
			}},
			{"second new login", func() { bob2 = srv.Login(bob.UserID, password) }},
			{"password change logging out other devices", func() {
				body := map[string]any{"new_password": "new-" + password, "logout_devices": true,
					"auth": map[string]any{"type": "m.login.password", "password": password,
						"identifier": map[string]any{"type": "m.id.user", "user": bob.UserID.String()}}}
				if _, err := bob.MakeRequest(ctx, "POST", bob.BuildClientURL("v3", "account", "password"), body, nil); err != nil {
					t.Fatalf("changing bob's password: %v", err)
				}
				if _, err := bob2.Whoami(ctx); err == nil {
					t.Fatalf("bob's other device still works after the password change")
				}
			}},
		}
		aliceSince, bobSince := syncToken(t, alice), syncToken(t, bob)
		for _, step := range steps {
			step.do()
			var to string
			_, to = syncLists(t, alice, aliceSince, "bob after the "+step.name, changedHas(bob.UserID))
			checkKeysChanges(t, alice, aliceSince, to, "bob after the "+step.name, changedHas(bob.UserID))
			aliceSince = to
			_, to = syncLists(t, bob, bobSince, "bob himself after the "+step.name, changedHas(bob.UserID))
			checkKeysChanges(t, bob, bobSince, to, "bob himself after the "+step.name, changedHas(bob.UserID))
			bobSince = to
		}

		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		got, to := syncLists(t, alice, aliceSince, "bob in left", leftHas(bob.UserID))
		if slices.Contains(got.changed, bob.UserID) {
			t.Errorf("alice's sync after bob left: %v, want bob in left only", got)
		}
		checkKeysChanges(t, alice, aliceSince, to, "bob in left", leftHas(bob.UserID))
		_, to = syncLists(t, bob, bobSince, "alice in left", leftHas(alice.UserID))
		checkKeysChanges(t, bob, bobSince, to, "alice in left", leftHas(alice.UserID))
	})
}

// TestDeviceListsAcrossFederation: alice joins a room on another server
// and sees herself and bob in device_lists.changed; then bob changes his
// devices (first key upload, new login, rename, deletion, leave) and
// alice sees each in device_lists, and his renamed and deleted devices in
// /keys/query, which her server answers from the device list cache that
// only m.device_list_update EDUs keep current.
func TestDeviceListsAcrossFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob := hs[0].Client("alice"), hs[1].Client("bob")
		// The room lives on bob's server: alice's server knows its state
		// from the send_join answer. Her join lists herself and bob.
		beforeJoin := syncToken(t, alice)
		roomID := publicRoom(t, bob, hs[1].Config.ServerName, alice)
		syncLists(t, alice, beforeJoin, "alice and bob after her join", changedHas(alice.UserID, bob.UserID))
		waitFor(t, "alice's server to see bob's join", func() (bool, error) {
			return membershipOf(ctx, alice, roomID, bob.UserID) == "join", nil
		})
		since := syncToken(t, alice)
		bobSince := syncToken(t, bob)
		// The cache of bob's devices starts now, before he has any keys.
		queryKeys(t, alice, bob.UserID)
		until := func(what string, cond func(lists) bool) {
			t.Helper()
			_, since = syncLists(t, alice, since, what, cond)
		}

		// A key upload of bob's first device (item 4 of the issue).
		newE2EEClient(t, bob)
		until("bob's first key upload", changedHas(bob.UserID))
		waitFor(t, "bob's first device in alice's query", func() (bool, error) {
			_, ok := queryKeys(t, alice, bob.UserID).DeviceKeys[bob.UserID][bob.DeviceID]
			return ok, nil
		})

		// A new login, before it uploads any key.
		bob2 := hs[1].Login(bob.UserID, "password-"+bob.UserID.Localpart())
		until("bob's new login", changedHas(bob.UserID))
		newE2EEClient(t, bob2)
		until("bob's second device's keys", changedHas(bob.UserID))
		waitFor(t, "bob's second device in alice's query", func() (bool, error) {
			_, ok := queryKeys(t, alice, bob.UserID).DeviceKeys[bob.UserID][bob2.DeviceID]
			return ok, nil
		})

		// A rename reaches the cache, hence alice's query.
		if err := bob.SetDeviceInfo(ctx, bob2.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "bob's tablet"}); err != nil {
			t.Fatal(err)
		}
		until("bob's rename", changedHas(bob.UserID))
		waitFor(t, "the new name in alice's query", func() (bool, error) {
			dev, ok := queryKeys(t, alice, bob.UserID).DeviceKeys[bob.UserID][bob2.DeviceID]
			return ok && dev.Unsigned["device_display_name"] == "bob's tablet", nil
		})

		// A deletion removes the device from alice's view.
		if _, err := bob2.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		until("bob's deleted device", changedHas(bob.UserID))
		waitFor(t, "the deleted device gone from alice's query", func() (bool, error) {
			_, ok := queryKeys(t, alice, bob.UserID).DeviceKeys[bob.UserID][bob2.DeviceID]
			return !ok, nil
		})

		// Leaving the only shared room: each is in the other's left.
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		until("bob in left", leftHas(bob.UserID))
		syncLists(t, bob, bobSince, "alice in left", leftHas(alice.UserID))
	})
}

// deviceUpdate is an m.device_list_update as the evil server received it.
type deviceUpdate struct {
	UserID            id.UserID       `json:"user_id"`
	DeviceID          id.DeviceID     `json:"device_id"`
	DeviceDisplayName string          `json:"device_display_name"`
	StreamID          int64           `json:"stream_id"`
	PrevID            []int64         `json:"prev_id"`
	Deleted           bool            `json:"deleted"`
	Keys              json.RawMessage `json:"keys"`
}

// waitUpdate waits until evil has received an m.device_list_update that
// satisfies cond, and returns it.
func waitUpdate(t *testing.T, evil *evilServer, what string, cond func(deviceUpdate) bool) deviceUpdate {
	t.Helper()
	var got deviceUpdate
	waitFor(t, what, func() (bool, error) {
		for _, raw := range evil.received("m.device_list_update") {
			var u deviceUpdate
			if err := json.Unmarshal(raw, &u); err != nil {
				return false, err
			}
			if cond(u) {
				got = u
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

// TestDeviceListUpdateEDUs: another server in a room gets an
// m.device_list_update for each device of a local user who joins the room,
// and for every later change of the user's devices: a new login, a
// rename, a key upload and a deletion, chained by prev_id.
func TestDeviceListUpdateEDUs(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 1)
		victim := hs[0].Config.ServerName
		alice, bob := hs[0].Client("alice"), hs[0].Client("bob")
		newE2EEClient(t, bob) // bob's keys go up before he shares a room with anyone remote
		roomID := publicRoom(t, alice, "")
		evil := startEvil(t, hs[0].TestCA)
		evil.join(t, victim, roomID)
		if _, err := bob.JoinRoom(ctx, roomID.String(), nil); err != nil {
			t.Fatal(err)
		}
		last := waitUpdate(t, evil, "an update of bob's device after his join", func(u deviceUpdate) bool {
			return u.UserID == bob.UserID && u.DeviceID == bob.DeviceID && !u.Deleted && len(u.Keys) > 0
		})
		next := func(what string, cond func(deviceUpdate) bool) {
			t.Helper()
			prev := last.StreamID
			last = waitUpdate(t, evil, what, func(u deviceUpdate) bool {
				return u.UserID == bob.UserID && u.StreamID > prev && cond(u)
			})
			if !slices.Contains(last.PrevID, prev) {
				t.Errorf("%s: prev_id %v does not chain to %d", what, last.PrevID, prev)
			}
		}

		bob2 := hs[0].Login(bob.UserID, "password-"+bob.UserID.Localpart())
		next("bob's new login", func(u deviceUpdate) bool { return u.DeviceID == bob2.DeviceID && !u.Deleted })
		if err := bob.SetDeviceInfo(ctx, bob2.DeviceID, &mautrix.ReqDeviceInfo{DisplayName: "bob's laptop"}); err != nil {
			t.Fatal(err)
		}
		next("bob's rename", func(u deviceUpdate) bool {
			return u.DeviceID == bob2.DeviceID && !u.Deleted && u.DeviceDisplayName == "bob's laptop"
		})
		newE2EEClient(t, bob2)
		next("bob's key upload", func(u deviceUpdate) bool { return u.DeviceID == bob2.DeviceID && len(u.Keys) > 0 })
		if _, err := bob2.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		next("bob's deletion", func(u deviceUpdate) bool { return u.DeviceID == bob2.DeviceID && u.Deleted })
	})
}

// rawJSON posts body to a client API path and decodes the answer.
func rawJSON(t *testing.T, cli *mautrix.Client, path []any, body any) map[string]json.RawMessage {
	t.Helper()
	var out map[string]json.RawMessage
	if _, err := cli.MakeRequest(context.Background(), "POST", cli.BuildClientURL(path...), body, &out); err != nil {
		t.Fatalf("POST %v: %v", path, err)
	}
	return out
}

// unsignedOf returns the raw unsigned member of device_keys[user][dev]
// in a /keys/query or /user/devices answer's device object, and whether
// the device is there.
func unsignedOf(t *testing.T, deviceKeys json.RawMessage) (json.RawMessage, bool) {
	t.Helper()
	var dev map[string]json.RawMessage
	if err := json.Unmarshal(deviceKeys, &dev); err != nil {
		t.Fatalf("device keys %s: %v", deviceKeys, err)
	}
	u, ok := dev["unsigned"]
	return u, ok
}

// uploadOneTimeKeys uploads one-time keys under the given key IDs, in one
// /keys/upload call.
func uploadOneTimeKeys(t *testing.T, cli *mautrix.Client, ids ...string) {
	t.Helper()
	otks := map[string]any{}
	for _, k := range ids {
		otks["signed_curve25519:"+k] = map[string]any{"key": "key-" + k}
	}
	rawJSON(t, cli, []any{"v3", "keys", "upload"}, map[string]any{"one_time_keys": otks})
}

// TestKeysResponseShapes checks details of the /keys answers that clients
// rely on: unsigned is always an object (holding the display name when
// there is one), failures is always present, and one-time keys are
// claimed in upload order (spec v1.15), locally and over federation.
func TestKeysResponseShapes(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 1)
		victim := hs[0].Config.ServerName
		alice, bob := hs[0].Client("alice"), hs[0].Client("bob")
		newE2EEClient(t, bob) // registered without a display name
		named := hs[0].Anonymous()
		if _, err := named.Login(ctx, &mautrix.ReqLogin{
			Type:       mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: bob.UserID.String()},
			Password:   "password-" + bob.UserID.Localpart(), InitialDeviceDisplayName: "bob's desktop", StoreCredentials: true,
		}); err != nil {
			t.Fatal(err)
		}
		newE2EEClient(t, named)

		wantUnsigned := func(where string, devs map[id.DeviceID]json.RawMessage) {
			t.Helper()
			for dev, want := range map[id.DeviceID]string{bob.DeviceID: `{}`, named.DeviceID: `{"device_display_name":"bob's desktop"}`} {
				u, ok := unsignedOf(t, devs[dev])
				if !ok || string(u) != want {
					t.Errorf("%s: unsigned of device %s is %s (present %v), want %s", where, dev, u, ok, want)
				}
			}
		}
		q := rawJSON(t, alice, []any{"v3", "keys", "query"}, map[string]any{"device_keys": map[id.UserID][]string{bob.UserID: {}}})
		if string(q["failures"]) != "{}" {
			t.Errorf("/keys/query failures: %s, want {}", q["failures"])
		}
		var devs map[id.UserID]map[id.DeviceID]json.RawMessage
		if err := json.Unmarshal(q["device_keys"], &devs); err != nil {
			t.Fatal(err)
		}
		wantUnsigned("/keys/query", devs[bob.UserID])

		// The federation answers, as another server sees them.
		evil := startEvil(t, hs[0].TestCA)
		var fq struct {
			DeviceKeys map[id.UserID]map[id.DeviceID]json.RawMessage `json:"device_keys"`
		}
		if err := evil.client.Do(ctx, victim, "POST", "/_matrix/federation/v1/user/keys/query", nil,
			map[string]any{"device_keys": map[id.UserID][]string{bob.UserID: {}}}, &fq); err != nil {
			t.Fatalf("federation keys query: %v", err)
		}
		wantUnsigned("federation user/keys/query", fq.DeviceKeys[bob.UserID])
		var fd struct {
			Devices []struct {
				DeviceID id.DeviceID     `json:"device_id"`
				Keys     json.RawMessage `json:"keys"`
			} `json:"devices"`
		}
		if err := evil.client.Do(ctx, victim, "GET", "/_matrix/federation/v1/user/devices/"+url.PathEscape(bob.UserID.String()), nil, nil, &fd); err != nil {
			t.Fatalf("federation user/devices: %v", err)
		}
		byDev := map[id.DeviceID]json.RawMessage{}
		for _, d := range fd.Devices {
			byDev[d.DeviceID] = d.Keys
		}
		wantUnsigned("federation user/devices", byDev)

		// One-time keys go out oldest upload first, whatever their IDs.
		carol := hs[0].Client("carol")
		uploadOneTimeKeys(t, carol, "ZZZ1")
		uploadOneTimeKeys(t, carol, "MMM1", "MMM2")
		uploadOneTimeKeys(t, carol, "AAA1")
		claim := func() string {
			t.Helper()
			resp := rawJSON(t, alice, []any{"v3", "keys", "claim"},
				map[string]any{"one_time_keys": map[id.UserID]map[id.DeviceID]string{carol.UserID: {carol.DeviceID: "signed_curve25519"}}})
			if string(resp["failures"]) != "{}" {
				t.Errorf("/keys/claim failures: %s, want {}", resp["failures"])
			}
			var keys map[id.UserID]map[id.DeviceID]map[string]json.RawMessage
			if err := json.Unmarshal(resp["one_time_keys"], &keys); err != nil {
				t.Fatal(err)
			}
			for k := range keys[carol.UserID][carol.DeviceID] {
				return k
			}
			return ""
		}
		fedClaim := func() string {
			t.Helper()
			var resp struct {
				OneTimeKeys map[id.UserID]map[id.DeviceID]map[string]json.RawMessage `json:"one_time_keys"`
			}
			if err := evil.client.Do(ctx, victim, "POST", "/_matrix/federation/v1/user/keys/claim", nil,
				map[string]any{"one_time_keys": map[id.UserID]map[id.DeviceID]string{carol.UserID: {carol.DeviceID: "signed_curve25519"}}}, &resp); err != nil {
				t.Fatalf("federation claim: %v", err)
			}
			for k := range resp.OneTimeKeys[carol.UserID][carol.DeviceID] {
				return k
			}
			return ""
		}
		first := claim()
		second := fedClaim()
		if first != "signed_curve25519:ZZZ1" || !slices.Contains([]string{"signed_curve25519:MMM1", "signed_curve25519:MMM2"}, second) {
			t.Errorf("first two claims: %s (local), %s (federation); want ZZZ1, then a key of the second upload", first, second)
		}
		third := claim()
		if !slices.Contains([]string{"signed_curve25519:MMM1", "signed_curve25519:MMM2"}, third) || third == second {
			t.Errorf("third claim: %s, want the other key of the second upload", third)
		}
		if fourth := fedClaim(); fourth != "signed_curve25519:AAA1" {
			t.Errorf("fourth claim: %s, want AAA1 of the last upload", fourth)
		}
	})
}
