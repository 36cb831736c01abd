package e2ee_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

const (
	alice = id.UserID("@alice:test")
	bob   = id.UserID("@bob:test")
)

func newService(t *testing.T, db *storage.DB) *e2ee.Service {
	t.Helper()
	for _, d := range []struct {
		user id.UserID
		dev  string
	}{{alice, "A1"}, {bob, "B1"}, {bob, "B2"}} {
		if _, err := db.ExecContext(context.Background(), `INSERT INTO devices (user_id, device_id, display_name, created_ts) VALUES ($1, $2, $3, 0)`,
			d.user.String(), d.dev, "dev "+d.dev); err != nil {
			t.Fatal(err)
		}
	}
	return e2ee.New(db, notifier.New(), "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func devKeys(user id.UserID, dev id.DeviceID) json.RawMessage {
	raw, _ := json.Marshal(map[string]any{"user_id": user, "device_id": dev, "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys": map[string]string{"curve25519:" + dev.String(): "c-" + dev.String(), "ed25519:" + dev.String(): "e-" + dev.String()}})
	return raw
}

func key(v string) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"key":%q}`, v)) }

func TestClaimOrder(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(t, db)
		counts, err := s.Upload(ctx, bob, "B1", devKeys(bob, "B1"),
			map[string]json.RawMessage{"signed_curve25519:AAAA": key("otk1"), "signed_curve25519:AAAB": key("otk2")},
			map[string]json.RawMessage{"signed_curve25519:FFFF": key("fb")})
		if err != nil {
			t.Fatal(err)
		}
		if counts["signed_curve25519"] != 2 {
			t.Fatalf("counts after upload: %v", counts)
		}
		req := map[id.UserID]map[id.DeviceID]string{bob: {"B1": "signed_curve25519"}}
		want := []string{"otk1", "otk2", "fb", "fb"}
		for i, w := range want {
			got, _, err := s.Claim(ctx, req, false)
			if err != nil {
				t.Fatal(err)
			}
			var k struct{ Key string }
			for _, raw := range got[bob]["B1"] {
				_ = json.Unmarshal(raw, &k)
			}
			if k.Key != w {
				t.Errorf("claim %d: got %q, want %q", i, k.Key, w)
			}
		}
		counts, types, err := s.KeyCounts(ctx, bob, "B1")
		if err != nil || len(types) != 0 || counts["signed_curve25519"] != 0 {
			t.Errorf("key counts after claiming every key: %v, %v, %v", counts, types, err)
		}
		// A new fallback key is unused again.
		if _, err := s.Upload(ctx, bob, "B1", nil, nil, map[string]json.RawMessage{"signed_curve25519:FFFG": key("fb2")}); err != nil {
			t.Fatal(err)
		}
		if _, types, _ := s.KeyCounts(ctx, bob, "B1"); len(types) != 1 || types[0] != "signed_curve25519" {
			t.Errorf("unused fallback types after a new upload: %v", types)
		}
		// No keys at all: the device is left out.
		got, _, err := s.Claim(ctx, map[id.UserID]map[id.DeviceID]string{bob: {"B2": "signed_curve25519"}}, false)
		if err != nil || len(got[bob]) != 0 {
			t.Errorf("claim from a device without keys: %v, %v", got, err)
		}
	})
}

func TestUploadChecksOwner(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(t, db)
		tests := []struct {
			name string
			keys json.RawMessage
			otk  map[string]json.RawMessage
		}{
			{"other user", devKeys(alice, "B1"), nil},
			{"other device", devKeys(bob, "B2"), nil},
			{"not an object", json.RawMessage(`"x"`), nil},
			{"bad key ID", nil, map[string]json.RawMessage{"nocolon": key("x")}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := s.Upload(ctx, bob, "B1", tc.keys, tc.otk, nil)
				if e, ok := mxerr.From(err); !ok || e.Status != 400 {
					t.Errorf("got %v, want a 400 Matrix error", err)
				}
			})
		}
	})
}

func TestQueryAndChanges(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(t, db)
		before, _ := db.CurrentID(ctx, "stream")
		for _, d := range []id.DeviceID{"B1", "B2"} {
			if _, err := s.Upload(ctx, bob, d, devKeys(bob, d), nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		after, _ := db.CurrentID(ctx, "stream")
		if after <= before {
			t.Fatalf("key uploads took no stream position")
		}
		// Uploading the same keys again is no change.
		if _, err := s.Upload(ctx, bob, "B1", devKeys(bob, "B1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if again, _ := db.CurrentID(ctx, "stream"); again != after {
			t.Errorf("an identical upload moved the stream from %d to %d", after, again)
		}
		resp, err := s.Query(ctx, alice, map[id.UserID][]id.DeviceID{bob: nil})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.DeviceKeys[bob]) != 2 {
			t.Fatalf("query of all devices: %d, want 2", len(resp.DeviceKeys[bob]))
		}
		var dk struct {
			Unsigned struct {
				Name string `json:"device_display_name"`
			}
		}
		_ = json.Unmarshal(resp.DeviceKeys[bob]["B1"], &dk)
		if dk.Unsigned.Name != "dev B1" {
			t.Errorf("display name %q, want dev B1", dk.Unsigned.Name)
		}
		resp, _ = s.Query(ctx, alice, map[id.UserID][]id.DeviceID{bob: {"B2"}})
		if len(resp.DeviceKeys[bob]) != 1 {
			t.Errorf("query of one device: %d", len(resp.DeviceKeys[bob]))
		}
		// A deleted device's keys are not served.
		if _, err := db.ExecContext(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = 'B2'`, bob.String()); err != nil {
			t.Fatal(err)
		}
		resp, _ = s.Query(ctx, alice, map[id.UserID][]id.DeviceID{bob: nil})
		if len(resp.DeviceKeys[bob]) != 1 {
			t.Errorf("query after deleting a device: %d, want 1", len(resp.DeviceKeys[bob]))
		}
		// bob sees his own change; alice shares no room with bob.
		changed, _, err := s.DeviceListChanges(ctx, bob, before, after)
		if err != nil || len(changed) != 1 || changed[0] != bob {
			t.Errorf("bob's changes: %v, %v", changed, err)
		}
		changed, _, _ = s.DeviceListChanges(ctx, alice, before, after)
		if len(changed) != 0 {
			t.Errorf("alice sees changes of a stranger: %v", changed)
		}
	})
}

func TestToDeviceAck(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(t, db)
		send := func(txn string) {
			t.Helper()
			if err := s.SendToDevice(ctx, alice, "A1", txn, "m.test", e2ee.ToDeviceMessages{bob: {"*": json.RawMessage(`{"txn":"` + txn + `"}`)}}); err != nil {
				t.Fatal(err)
			}
		}
		send("t1")
		send("t1") // a retry
		now, _ := db.CurrentID(ctx, "stream")
		whole := e2ee.WholePosition
		inbox := func(dev id.DeviceID, acked e2ee.ToDeviceCursor, upto int64) []json.RawMessage {
			t.Helper()
			msgs, _, more, err := s.ToDevice(ctx, bob, dev, acked, upto, e2ee.MaxToDevicePerSync)
			if err != nil || more {
				t.Fatalf("%s: %v, more %v", dev, err, more)
			}
			return msgs
		}
		for _, dev := range []id.DeviceID{"B1", "B2"} {
			if msgs := inbox(dev, whole(-1), now); len(msgs) != 1 {
				t.Fatalf("%s: %d messages, want 1", dev, len(msgs))
			}
		}
		send("t2")
		now2, _ := db.CurrentID(ctx, "stream")
		// Acknowledging the first position leaves only the second message.
		if msgs := inbox("B1", whole(now), now2); len(msgs) != 1 || !json.Valid(msgs[0]) {
			t.Fatalf("after ack: %d messages, want 1", len(msgs))
		}
		// Not acknowledged: still there; a message past upto is held back.
		send("t3")
		if msgs := inbox("B1", whole(now), now2); len(msgs) != 1 {
			t.Errorf("repeat: %d messages, want 1", len(msgs))
		}
		if msgs := inbox("B1", whole(now2), now2+10); len(msgs) != 1 {
			t.Errorf("after second ack: %d messages, want 1 (t3)", len(msgs))
		}
	})
}

// TestToDeviceBacklogInPages: a device's backlog goes out at most
// MaxToDevicePerSync messages at a time, each page acknowledged by the
// cursor of the one before, and a page not acknowledged comes again.
func TestToDeviceBacklogInPages(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(t, db)
		const total = 2*e2ee.MaxToDevicePerSync + 50
		for i := range total {
			txn := fmt.Sprintf("t%d", i)
			if err := s.SendToDevice(ctx, alice, "A1", txn, "m.test", e2ee.ToDeviceMessages{bob: {"B1": json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`)}}); err != nil {
				t.Fatal(err)
			}
		}
		now, _ := db.CurrentID(ctx, "stream")
		acked := e2ee.WholePosition(-1)
		var got []string
		for page := 0; ; page++ {
			msgs, last, more, err := s.ToDevice(ctx, bob, "B1", acked, now, e2ee.MaxToDevicePerSync)
			if err != nil {
				t.Fatal(err)
			}
			if page == 0 {
				// Asked again with the same acknowledgement: the same page.
				again, _, _, _ := s.ToDevice(ctx, bob, "B1", acked, now, e2ee.MaxToDevicePerSync)
				if len(again) != len(msgs) || string(again[0]) != string(msgs[0]) {
					t.Fatalf("page repeated: %d messages from %s, want %d from %s", len(again), again[0], len(msgs), msgs[0])
				}
			}
			for _, m := range msgs {
				var ev struct {
					Content struct{ N int } `json:"content"`
				}
				_ = json.Unmarshal(m, &ev)
				got = append(got, fmt.Sprint(ev.Content.N))
			}
			if !more {
				if len(msgs) != 50 {
					t.Fatalf("last page: %d messages, want 50", len(msgs))
				}
				break
			}
			if len(msgs) != e2ee.MaxToDevicePerSync || page > 2 {
				t.Fatalf("page %d: %d messages", page, len(msgs))
			}
			acked = last
		}
		if len(got) != total || got[0] != "0" || got[total-1] != fmt.Sprint(total-1) {
			t.Fatalf("got %d messages, first %s, last %s", len(got), got[0], got[len(got)-1])
		}
		// Acknowledging everything empties the inbox.
		if msgs, _, more, _ := s.ToDevice(ctx, bob, "B1", e2ee.WholePosition(now), now, e2ee.MaxToDevicePerSync); len(msgs) != 0 || more {
			t.Fatalf("after the last ack: %d messages", len(msgs))
		}
		var left int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2ee_to_device WHERE user_id = $1`, bob.String()).Scan(&left); err != nil || left != 0 {
			t.Fatalf("%d messages stored after the last ack (%v)", left, err)
		}
	})
}

func TestKeyBackup(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(t, db)
		if _, err := s.Backup(ctx, alice, ""); !errors.Is(err, mxerr.NotFound) {
			t.Fatalf("no backup: %v", err)
		}
		v1, err := s.CreateBackup(ctx, alice, "alg", json.RawMessage(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		k := func(idx int64, verified bool) e2ee.BackupKey {
			return e2ee.BackupKey{FirstMessageIndex: idx, IsVerified: verified, SessionData: json.RawMessage(fmt.Sprintf(`{"i":%d}`, idx))}
		}
		etag0, count, err := s.PutBackupKeys(ctx, alice, v1, e2ee.BackupKeys{"!r:test": {"s": k(5, false)}})
		if err != nil || count != 1 {
			t.Fatalf("put: %d, %v", count, err)
		}
		tests := []struct {
			name    string
			key     e2ee.BackupKey
			replace bool
		}{
			{"higher index", k(7, false), false},
			{"lower index", k(2, false), true},
			{"verified with higher index", k(9, true), true},
			{"unverified with lower index", k(0, false), false},
		}
		etag := etag0
		for _, tc := range tests {
			newTag, _, err := s.PutBackupKeys(ctx, alice, v1, e2ee.BackupKeys{"!r:test": {"s": tc.key}})
			if err != nil {
				t.Fatal(err)
			}
			if (newTag != etag) != tc.replace {
				t.Errorf("%s: etag %s→%s, replace want %v", tc.name, etag, newTag, tc.replace)
			}
			etag = newTag
		}
		got, err := s.GetBackupKeys(ctx, alice, v1, "!r:test", "s")
		if err != nil || got["!r:test"]["s"].FirstMessageIndex != 9 {
			t.Errorf("stored key: %+v, %v", got, err)
		}
		if err := s.UpdateBackup(ctx, alice, v1, "other", json.RawMessage(`{}`)); err == nil {
			t.Errorf("changing the algorithm succeeded")
		}
		v2, _ := s.CreateBackup(ctx, alice, "alg", json.RawMessage(`{}`))
		_, _, err = s.PutBackupKeys(ctx, alice, v1, e2ee.BackupKeys{"!r:test": {"s": k(1, true)}})
		if e, ok := mxerr.From(err); !ok || e.Code != "M_WRONG_ROOM_KEYS_VERSION" || e.Extra["current_version"] != v2 {
			t.Errorf("put to old version: %v", err)
		}
		if err := s.DeleteBackup(ctx, alice, v2); err != nil {
			t.Fatal(err)
		}
		if b, err := s.Backup(ctx, alice, ""); err != nil || b.Version != v1 || b.Count != 1 {
			t.Errorf("current after delete: %+v, %v", b, err)
		}
		if _, err := s.Backup(ctx, bob, v1); !errors.Is(err, mxerr.NotFound) {
			t.Errorf("bob reads alice's backup: %v", err)
		}
	})
}

func TestCrossSigningNeedsAuth(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(t, db)
		cs := func(usage, pub string) json.RawMessage {
			raw, _ := json.Marshal(map[string]any{"user_id": alice, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + pub: pub}})
			return raw
		}
		s1 := newTestKey()
		first := map[string]json.RawMessage{"master": cs("master", "M1"), "self_signing": cs("self_signing", s1.pub)}
		if need, err := s.CrossSigningNeedsAuth(ctx, alice, first); err != nil || need {
			t.Fatalf("first upload needs auth: %v %v", need, err)
		}
		if err := s.UploadCrossSigning(ctx, alice, first); err != nil {
			t.Fatal(err)
		}
		if need, _ := s.CrossSigningNeedsAuth(ctx, alice, first); need {
			t.Errorf("repeating the same keys needs auth")
		}
		if need, _ := s.CrossSigningNeedsAuth(ctx, alice, map[string]json.RawMessage{"master": cs("master", "M2")}); !need {
			t.Errorf("replacing the master key needs no auth")
		}
		if err := s.UploadCrossSigning(ctx, alice, map[string]json.RawMessage{"user_signing": cs("master", "U1")}); err == nil {
			t.Errorf("a key with the wrong usage was accepted")
		}
		// Signatures by alice of bob's device are merged in on query.
		if _, err := s.Upload(ctx, bob, "B1", devKeys(bob, "B1"), nil, nil); err != nil {
			t.Fatal(err)
		}
		signed, sig := s1.sign(t, alice, "ed25519:"+s1.pub, devKeys(bob, "B1"))
		forged := json.RawMessage(strings.Replace(string(signed), sig, base64.RawStdEncoding.EncodeToString(make([]byte, 64)), 1))
		tampered, _ := s1.sign(t, alice, "ed25519:"+s1.pub, json.RawMessage(strings.Replace(string(devKeys(bob, "B1")), "e-B1", "e-other", 1)))
		failures, err := s.UploadSignatures(ctx, alice, map[id.UserID]map[string]json.RawMessage{bob: {"B1": signed, "NOPE": signed}})
		if err != nil || len(failures[bob]) != 1 {
			t.Fatalf("signature upload: %v, %v", failures, err)
		}
		for name, obj := range map[string]json.RawMessage{"forged": forged, "tampered": tampered} {
			failures, err := s.UploadSignatures(ctx, alice, map[id.UserID]map[string]json.RawMessage{bob: {"B1": obj}})
			if err != nil || len(failures[bob]) != 1 {
				t.Errorf("a %s signature was accepted: %v, %v", name, failures, err)
			}
		}
		resp, _ := s.Query(ctx, bob, map[id.UserID][]id.DeviceID{bob: nil, alice: nil})
		var dk struct {
			Signatures map[id.UserID]map[string]string
		}
		_ = json.Unmarshal(resp.DeviceKeys[bob]["B1"], &dk)
		if dk.Signatures[alice]["ed25519:"+s1.pub] != sig {
			t.Errorf("device keys lack alice's signature: %s", resp.DeviceKeys[bob]["B1"])
		}
		if resp.MasterKeys[alice] == nil || resp.SelfSigningKeys[alice] == nil {
			t.Errorf("bob does not see alice's master and self-signing keys")
		}
	})
}

func TestDeleteDevices(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		s := newService(t, db)
		if _, err := s.Upload(ctx, bob, "B1", devKeys(bob, "B1"), map[string]json.RawMessage{"signed_curve25519:A": key("k")}, nil); err != nil {
			t.Fatal(err)
		}
		before, _ := db.CurrentID(ctx, "stream")
		if err := s.DeleteDevices(ctx, bob, []id.DeviceID{"B1"}); err != nil {
			t.Fatal(err)
		}
		after, _ := db.CurrentID(ctx, "stream")
		if changed, _, _ := s.DeviceListChanges(ctx, bob, before, after); len(changed) != 1 {
			t.Errorf("deletion is not a device list change: %v", changed)
		}
		if n, _ := s.OneTimeKeyCounts(ctx, bob, "B1"); n["signed_curve25519"] != 0 {
			t.Errorf("one-time keys survive deletion: %v", n)
		}
		if resp, _ := s.Query(ctx, alice, map[id.UserID][]id.DeviceID{bob: nil}); len(resp.DeviceKeys[bob]) != 0 {
			t.Errorf("deleted device still served")
		}
	})
}

// testKey is a real ed25519 key for signing test objects.
type testKey struct {
	priv ed25519.PrivateKey
	pub  string // unpadded base64
}

func newTestKey() testKey {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return testKey{priv: priv, pub: base64.RawStdEncoding.EncodeToString(pub)}
}

// sign returns obj carrying signer's signature under keyID, made the way
// clients make them (canonical JSON without signatures and unsigned), and
// the signature.
func (k testKey) sign(t *testing.T, signer id.UserID, keyID string, obj json.RawMessage) (json.RawMessage, string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	canonical, err := canonicaljson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(k.priv, canonical))
	m["signatures"] = map[string]any{signer.String(): map[string]string{keyID: sig}}
	out, _ := json.Marshal(m)
	return out, sig
}
