package keys_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeFetcher answers key requests from functions per server and counts
// calls. It stands in for the network in these unit tests; the HTTPS path
// is tested in federationapi.
type fakeFetcher struct {
	mu     sync.Mutex
	direct map[string]func() (json.RawMessage, error)
	query  map[string]func(keys.QueryReq) (keys.QueryResp, error)
	calls  map[string]int
}

func newFetcher() *fakeFetcher {
	return &fakeFetcher{
		direct: map[string]func() (json.RawMessage, error){},
		query:  map[string]func(keys.QueryReq) (keys.QueryResp, error){},
		calls:  map[string]int{},
	}
}

func (f *fakeFetcher) ServerKeys(_ context.Context, server string) (json.RawMessage, error) {
	f.mu.Lock()
	f.calls[server]++
	fn := f.direct[server]
	f.mu.Unlock()
	if fn == nil {
		return nil, errors.New("connection refused")
	}
	return fn()
}

func (f *fakeFetcher) QueryKeys(_ context.Context, notary string, req keys.QueryReq) (keys.QueryResp, error) {
	f.mu.Lock()
	f.calls["query:"+notary]++
	fn := f.query[notary]
	f.mu.Unlock()
	if fn == nil {
		return keys.QueryResp{}, errors.New("connection refused")
	}
	return fn(req)
}

func (f *fakeFetcher) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func newKey(t testing.TB, version string) keys.SigningKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys.SigningKey{ID: id.KeyID("ed25519:" + version), Priv: priv}
}

// keyResponse builds a key response of server listing current and old,
// signed by each of signers.
func keyResponse(t testing.TB, server string, validUntil time.Time, current []keys.SigningKey, old map[id.KeyID]keys.OldVerifyKeyJSON, signers ...keys.SigningKey) json.RawMessage {
	t.Helper()
	resp := keys.ServerKeysResp{
		ServerName:    server,
		VerifyKeys:    map[id.KeyID]keys.VerifyKeyJSON{},
		OldVerifyKeys: old,
		ValidUntilTS:  validUntil.UnixMilli(),
	}
	for _, k := range current {
		resp.VerifyKeys[k.ID] = keys.VerifyKeyJSON{Key: k.Public()}
	}
	raw, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		if raw, err = s.SignJSON(server, raw); err != nil {
			t.Fatal(err)
		}
	}
	return raw
}

func newRing(t *testing.T, db *storage.DB, f keys.Fetcher, c *clock, notaries ...config.TrustedKeyServer) *keys.Ring {
	t.Helper()
	r, err := keys.NewRing(context.Background(), keys.RingConfig{
		DB: db, ServerName: "local.test", Key: newKey(t, "local"), Fetcher: f,
		Notaries: notaries, Log: discard, Now: c.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRingFetchesCachesAndPersists(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		c := &clock{t: time.UnixMilli(1_700_000_000_000)}
		remote := newKey(t, "r1")
		f := newFetcher()
		// valid_until_ts a month out: the ring must cap it at 7 days.
		f.direct["remote.test"] = func() (json.RawMessage, error) {
			return keyResponse(t, "remote.test", c.Now().Add(30*24*time.Hour), []keys.SigningKey{remote}, nil, remote), nil
		}
		r := newRing(t, db, f, c)
		got, until, err := r.VerifyKey(ctx, "remote.test", remote.ID, c.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got != remote.Public() {
			t.Fatalf("key = %s, want %s", got, remote.Public())
		}
		if want := c.Now().Add(7 * 24 * time.Hour); !until.Equal(want) {
			t.Fatalf("valid until %v, want the 7-day cap %v", until, want)
		}
		if _, _, err := r.VerifyKey(ctx, "remote.test", remote.ID, c.Now()); err != nil {
			t.Fatal(err)
		}
		if n := f.count("remote.test"); n != 1 {
			t.Fatalf("fetched %d times, want 1 (second answer from cache)", n)
		}
		// A new ring on the same database, with the network gone.
		r2 := newRing(t, db, newFetcher(), c)
		got, _, err = r2.VerifyKey(ctx, "remote.test", remote.ID, c.Now())
		if err != nil || got != remote.Public() {
			t.Fatalf("after reload: key %q, err %v", got, err)
		}
	})
}

func TestRingRejectsBadResponses(t *testing.T) {
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	remote, forger := newKey(t, "r1"), newKey(t, "r1")
	for _, tc := range []struct {
		name string
		resp func() json.RawMessage
	}{
		{"forged self-signature", func() json.RawMessage {
			return keyResponse(t, "remote.test", c.Now().Add(time.Hour), []keys.SigningKey{remote}, nil, forger)
		}},
		{"unsigned", func() json.RawMessage {
			return keyResponse(t, "remote.test", c.Now().Add(time.Hour), []keys.SigningKey{remote}, nil)
		}},
		{"wrong server_name", func() json.RawMessage {
			return keyResponse(t, "evil.test", c.Now().Add(time.Hour), []keys.SigningKey{remote}, nil, remote)
		}},
		{"no valid_until_ts", func() json.RawMessage {
			return keyResponse(t, "remote.test", time.UnixMilli(0), []keys.SigningKey{remote}, nil, remote)
		}},
		{"not JSON", func() json.RawMessage { return json.RawMessage(`[`) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T, db *storage.DB) {
				f := newFetcher()
				f.direct["remote.test"] = func() (json.RawMessage, error) { return tc.resp(), nil }
				r := newRing(t, db, f, c)
				_, _, err := r.VerifyKey(context.Background(), "remote.test", remote.ID, c.Now())
				if !errors.Is(err, keys.ErrKeyNotFound) {
					t.Fatalf("err = %v, want ErrKeyNotFound", err)
				}
				var n int
				if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM server_keys WHERE server_name = 'remote.test'`).Scan(&n); err != nil || n != 0 {
					t.Fatalf("%d rows stored (err %v), want none", n, err)
				}
			})
		})
	}
}

func TestRingRefetchesPastValidity(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		c := &clock{t: time.UnixMilli(1_700_000_000_000)}
		remote := newKey(t, "r1")
		f := newFetcher()
		f.direct["remote.test"] = func() (json.RawMessage, error) {
			return keyResponse(t, "remote.test", c.Now().Add(time.Hour), []keys.SigningKey{remote}, nil, remote), nil
		}
		r := newRing(t, db, f, c)
		if _, _, err := r.VerifyKey(ctx, "remote.test", remote.ID, c.Now()); err != nil {
			t.Fatal(err)
		}
		c.Add(2 * time.Hour)
		_, until, err := r.VerifyKey(ctx, "remote.test", remote.ID, c.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n := f.count("remote.test"); n != 2 {
			t.Fatalf("fetched %d times, want 2", n)
		}
		if until.Before(c.Now()) {
			t.Fatalf("refetched key valid until %v, before now %v", until, c.Now())
		}
		// The server goes away: the stale key is still returned with its
		// old validity, for room versions that ignore validity.
		delete(f.direct, "remote.test")
		c.Add(2 * time.Hour)
		_, until2, err := r.VerifyKey(ctx, "remote.test", remote.ID, c.Now())
		if err != nil || !until2.Equal(until) {
			t.Fatalf("stale key: until %v err %v, want %v", until2, err, until)
		}
	})
}

func TestRingBacksOffAfterFailure(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		c := &clock{t: time.UnixMilli(1_700_000_000_000)}
		f := newFetcher()
		r := newRing(t, db, f, c)
		if _, _, err := r.VerifyKey(ctx, "down.test", "ed25519:x", c.Now()); !errors.Is(err, keys.ErrKeyNotFound) {
			t.Fatalf("err = %v, want ErrKeyNotFound", err)
		}
		_, _, err := r.VerifyKey(ctx, "down.test", "ed25519:x", c.Now())
		if !errors.Is(err, keys.ErrBackoff) || f.count("down.test") != 1 {
			t.Fatalf("second try: err %v after %d fetches, want ErrBackoff after 1", err, f.count("down.test"))
		}
		c.Add(time.Minute)
		_, _, _ = r.VerifyKey(ctx, "down.test", "ed25519:x", c.Now())
		if n := f.count("down.test"); n != 2 {
			t.Fatalf("after the backoff: %d fetches, want 2", n)
		}
	})
}

func TestRingUsesOldVerifyKeys(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		c := &clock{t: time.UnixMilli(1_700_000_000_000)}
		cur, old := newKey(t, "new"), newKey(t, "old")
		expired := c.Now().Add(-24 * time.Hour)
		f := newFetcher()
		f.direct["remote.test"] = func() (json.RawMessage, error) {
			return keyResponse(t, "remote.test", c.Now().Add(time.Hour), []keys.SigningKey{cur},
				map[id.KeyID]keys.OldVerifyKeyJSON{old.ID: {Key: old.Public(), ExpiredTS: expired.UnixMilli()}}, cur), nil
		}
		r := newRing(t, db, f, c)
		got, until, err := r.VerifyKey(ctx, "remote.test", old.ID, expired.Add(-time.Hour))
		if err != nil || got != old.Public() || !until.Equal(expired) {
			t.Fatalf("old key: %q until %v err %v, want %q until %v", got, until, err, old.Public(), expired)
		}
		// Asking for the old key past its expiry returns it as it is; a
		// refetch cannot revive it.
		if _, until, _ := r.VerifyKey(ctx, "remote.test", old.ID, c.Now()); !until.Equal(expired) || f.count("remote.test") != 1 {
			t.Fatalf("old key past expiry: until %v after %d fetches", until, f.count("remote.test"))
		}
	})
}

func TestRingAsksNotaries(t *testing.T) {
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	remote, notaryKey, otherKey := newKey(t, "r1"), newKey(t, "n1"), newKey(t, "n1")
	signedBy := func(signer keys.SigningKey) func(keys.QueryReq) (keys.QueryResp, error) {
		return func(req keys.QueryReq) (keys.QueryResp, error) {
			if _, ok := req.ServerKeys["remote.test"][remote.ID]; !ok {
				return keys.QueryResp{}, errors.New("unexpected query")
			}
			raw := keyResponse(t, "remote.test", c.Now().Add(time.Hour), []keys.SigningKey{remote}, nil, remote)
			raw, err := signer.SignJSON("notary.test", raw)
			return keys.QueryResp{ServerKeys: []json.RawMessage{raw}}, err
		}
	}
	pinned := config.TrustedKeyServer{ServerName: "notary.test", VerifyKeys: map[string]string{string(notaryKey.ID): string(notaryKey.Public())}}
	unpinned := config.TrustedKeyServer{ServerName: "notary.test"}
	notaryOwn := func() (json.RawMessage, error) {
		return keyResponse(t, "notary.test", c.Now().Add(time.Hour), []keys.SigningKey{notaryKey}, nil, notaryKey), nil
	}
	for _, tc := range []struct {
		name   string
		notary config.TrustedKeyServer
		signer keys.SigningKey
		ok     bool
	}{
		{"pinned notary key", pinned, notaryKey, true},
		{"signed by a key the notary does not hold", pinned, otherKey, false},
		{"notary keys fetched from the notary", unpinned, notaryKey, true},
		{"fetched notary keys, wrong signer", unpinned, otherKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T, db *storage.DB) {
				f := newFetcher()
				f.direct["notary.test"] = notaryOwn
				f.query["notary.test"] = signedBy(tc.signer)
				r := newRing(t, db, f, c, tc.notary)
				got, _, err := r.VerifyKey(context.Background(), "remote.test", remote.ID, c.Now())
				if tc.ok && (err != nil || got != remote.Public()) {
					t.Fatalf("key %q err %v, want the key through the notary", got, err)
				}
				if !tc.ok && !errors.Is(err, keys.ErrKeyNotFound) {
					t.Fatalf("err = %v, want ErrKeyNotFound", err)
				}
				if f.count("remote.test") != 1 || f.count("query:notary.test") != 1 {
					t.Fatalf("calls %v: want one direct try, then one notary query", f.calls)
				}
			})
		})
	}
}

func TestOwnKeysSurviveRotation(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		c := &clock{t: time.UnixMilli(1_700_000_000_000)}
		first, second := newKey(t, "first"), newKey(t, "second")
		open := func(k keys.SigningKey) *keys.Ring {
			r, err := keys.NewRing(ctx, keys.RingConfig{DB: db, ServerName: "local.test", Key: k, Log: discard, Now: c.Now})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		open(first)
		c.Add(time.Hour)
		rotatedAt := c.Now()
		r := open(second)
		c.Add(time.Hour)
		open(second) // a restart with the same key changes nothing
		raw, err := r.OwnKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var resp keys.ServerKeysResp
		if err := json.Unmarshal(raw, &resp); err != nil {
			t.Fatal(err)
		}
		if err := keys.VerifyJSON("local.test", second.ID, second.Public(), raw); err != nil {
			t.Fatalf("own response not self-signed: %v", err)
		}
		if _, ok := resp.VerifyKeys[second.ID]; !ok || len(resp.VerifyKeys) != 1 {
			t.Fatalf("verify_keys = %v, want only %s", resp.VerifyKeys, second.ID)
		}
		old, ok := resp.OldVerifyKeys[first.ID]
		if !ok || old.Key != first.Public() || old.ExpiredTS != rotatedAt.UnixMilli() {
			t.Fatalf("old_verify_keys = %v, want %s expired at %d", resp.OldVerifyKeys, first.ID, rotatedAt.UnixMilli())
		}
		if resp.ValidUntilTS != c.Now().Add(keys.OwnValidity).UnixMilli() {
			t.Fatalf("valid_until_ts = %d", resp.ValidUntilTS)
		}
		// Our keys are answered locally, old ones with their expiry.
		got, until, err := r.VerifyKey(ctx, "local.test", first.ID, time.Time{})
		if err != nil || got != first.Public() || !until.Equal(rotatedAt) {
			t.Fatalf("own old key: %q until %v err %v", got, until, err)
		}
		if _, _, err := r.VerifyKey(ctx, "local.test", "ed25519:nope", time.Time{}); !errors.Is(err, keys.ErrKeyNotFound) {
			t.Fatalf("unknown own key: err %v", err)
		}
	})
}

func TestNotariseCountersigns(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		c := &clock{t: time.UnixMilli(1_700_000_000_000)}
		remote := newKey(t, "r1")
		f := newFetcher()
		f.direct["remote.test"] = func() (json.RawMessage, error) {
			return keyResponse(t, "remote.test", c.Now().Add(time.Hour), []keys.SigningKey{remote}, nil, remote), nil
		}
		ourKey := newKey(t, "local")
		r, err := keys.NewRing(ctx, keys.RingConfig{DB: db, ServerName: "local.test", Key: ourKey, Fetcher: f, Log: discard, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Notarise(ctx, "remote.test", nil, c.Now())
		if err != nil || len(out) != 1 {
			t.Fatalf("Notarise: %d responses, err %v", len(out), err)
		}
		if err := keys.VerifyJSON("remote.test", remote.ID, remote.Public(), out[0]); err != nil {
			t.Fatalf("server's own signature lost: %v", err)
		}
		if err := keys.VerifyJSON("local.test", ourKey.ID, ourKey.Public(), out[0]); err != nil {
			t.Fatalf("not countersigned: %v", err)
		}
		// Within half the lifetime the stored answer is served again; the
		// server being down afterwards still leaves the cached answer.
		delete(f.direct, "remote.test")
		c.Add(45 * time.Minute)
		out, err = r.Notarise(ctx, "remote.test", nil, c.Now())
		if err != nil || len(out) != 1 || f.count("remote.test") != 2 {
			t.Fatalf("stale notary answer: %d responses, %d fetches, err %v", len(out), f.count("remote.test"), err)
		}
		if out, _ := r.Notarise(ctx, "unknown.test", nil, c.Now()); len(out) != 0 {
			t.Fatalf("unknown server: %d responses, want none", len(out))
		}
	})
}

func TestSignJSONIsCanonicalAndKeepsOthers(t *testing.T) {
	a, b := newKey(t, "a"), newKey(t, "b")
	raw := json.RawMessage(`{"b":{"z":1,"a":[2,{"y":1,"x":2}]},"a":"é","unsigned":{"age":1},"signatures":{"other.test":{"ed25519:o":"sig"}}}`)
	signed, err := a.SignJSON("one.test", raw)
	if err != nil {
		t.Fatal(err)
	}
	if signed, err = b.SignJSON("two.test", signed); err != nil {
		t.Fatal(err)
	}
	if err := keys.VerifyJSON("one.test", a.ID, a.Public(), signed); err != nil {
		t.Fatal(err)
	}
	if err := keys.VerifyJSON("two.test", b.ID, b.Public(), signed); err != nil {
		t.Fatal(err)
	}
	if err := keys.VerifyJSON("two.test", b.ID, a.Public(), signed); err == nil {
		t.Fatal("verified with the wrong key")
	}
	var out struct {
		Unsigned   map[string]int               `json:"unsigned"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(signed, &out); err != nil {
		t.Fatal(err)
	}
	if out.Unsigned["age"] != 1 || out.Signatures["other.test"]["ed25519:o"] != "sig" {
		t.Fatalf("lost unsigned or existing signatures: %s", signed)
	}
	if _, err := a.SignJSON("one.test", json.RawMessage(`[1]`)); err == nil {
		t.Fatal("signed a non-object")
	}
}

func TestRingFetchesOnceForConcurrentCallers(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		c := &clock{t: time.UnixMilli(1_700_000_000_000)}
		remote := newKey(t, "r1")
		started, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		f := newFetcher()
		f.direct["remote.test"] = func() (json.RawMessage, error) {
			once.Do(func() { close(started) })
			<-release
			return keyResponse(t, "remote.test", c.Now().Add(time.Hour), []keys.SigningKey{remote}, nil, remote), nil
		}
		r := newRing(t, db, f, c)
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, _, err := r.VerifyKey(context.Background(), "remote.test", remote.ID, c.Now())
				if err == nil && got != remote.Public() {
					err = errors.New("wrong key")
				}
				errs <- err
			}()
		}
		<-started
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := f.count("remote.test"); n != 1 {
			t.Fatalf("%d fetches for 20 concurrent callers, want 1", n)
		}
	})
}

// BenchmarkVerifyKeyCached measures the in-memory path every signature
// check takes once a server's keys are known.
func BenchmarkVerifyKeyCached(b *testing.B) {
	db, err := storage.Open(context.Background(), "sqlite:"+b.TempDir()+"/k.db", "", 0, discard)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	remote := newKey(b, "r1")
	f := newFetcher()
	f.direct["remote.test"] = func() (json.RawMessage, error) {
		return keyResponse(b, "remote.test", c.Now().Add(time.Hour), []keys.SigningKey{remote}, nil, remote), nil
	}
	r, err := keys.NewRing(context.Background(), keys.RingConfig{DB: db, ServerName: "local.test", Key: newKey(b, "l"), Fetcher: f, Log: discard, Now: c.Now})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.VerifyKey(ctx, "remote.test", remote.ID, c.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
