package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/storage"
)

// OwnValidity is how far ahead the valid_until_ts of our key response
// lies. The spec asks for at least an hour and caps what receivers accept
// at seven days; a day (Synapse's default) lets a revoked key age out soon
// while remote servers refetch only daily.
const OwnValidity = 24 * time.Hour

// Fetch pacing: a server whose keys could not be fetched is not asked again
// before the backoff passes (doubling from backoffMin up to backoffMax); a
// server whose keys were fetched is asked again only after minRefetch, so
// forged X-Matrix key IDs cannot make us flood it. The in-memory maps are
// dropped when they pass maxServers (the database keeps the keys), so
// forged origins cannot grow them without bound.
const (
	backoffMin = 30 * time.Second
	backoffMax = time.Hour
	minRefetch = time.Minute
	maxServers = 10000
)

// Errors of VerifyKey, for errors.Is.
var (
	// ErrKeyNotFound: neither the server nor a notary knows the key ID.
	ErrKeyNotFound = errors.New("verify key not found")
	// ErrBackoff: fetching failed recently and is not retried yet.
	ErrBackoff = errors.New("key fetch backing off after a recent failure")
)

// Fetcher makes the key requests of the federation API. fedclient.Client
// implements it; the interface breaks the import cycle, since fedclient
// signs requests with our SigningKey.
type Fetcher interface {
	// ServerKeys gets GET /_matrix/key/v2/server from server.
	ServerKeys(ctx context.Context, server string) (json.RawMessage, error)
	// QueryKeys posts POST /_matrix/key/v2/query to notary.
	QueryKeys(ctx context.Context, notary string, req QueryReq) (QueryResp, error)
}

// RingConfig is what NewRing needs.
type RingConfig struct {
	DB         *storage.DB
	ServerName string
	// Key is our current signing key. A key of ours that was current
	// before and differs from Key is kept as an old verify key.
	Key SigningKey
	// Fetcher reaches other servers; nil serves only stored keys.
	Fetcher Fetcher
	// Notaries are asked when a server's own key endpoint fails.
	Notaries []config.TrustedKeyServer
	Log      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Ring answers which verify keys servers use: ours locally, others from an
// in-memory cache, the database, the server itself or trusted notaries, in
// that order. It is safe for concurrent use.
type Ring struct {
	db         *storage.DB
	serverName string
	own        SigningKey
	fetcher    Fetcher
	notaries   []config.TrustedKeyServer
	log        *slog.Logger
	now        func() time.Time

	mu       sync.Mutex
	cache    map[string]map[id.KeyID]Key // server → key ID → key; a loaded server is present even when empty
	gen      uint64                      // counts stores, see lookup
	inflight map[string]chan struct{}
	failures map[string]failure
	fetched  map[string]time.Time // last successful fetch per server
}

type failure struct {
	retryAt time.Time
	delay   time.Duration
}

// NewRing records our current key (retiring a rotated one) and returns the
// ring.
func NewRing(ctx context.Context, c RingConfig) (*Ring, error) {
	r := &Ring{
		db: c.DB, serverName: c.ServerName, own: c.Key, fetcher: c.Fetcher,
		notaries: c.Notaries, log: c.Log, now: c.Now,
		cache:    map[string]map[id.KeyID]Key{},
		inflight: map[string]chan struct{}{},
		failures: map[string]failure{},
		fetched:  map[string]time.Time{},
	}
	if r.now == nil {
		r.now = time.Now
	}
	if err := recordOwnKey(ctx, r.db, r.serverName, r.own, r.now()); err != nil {
		return nil, err
	}
	return r, nil
}

// ServerName is the name the ring answers for locally.
func (r *Ring) ServerName() string { return r.serverName }

// VerifyKey returns server's key keyID and when it stops being valid. When
// the known copy expires before minValidUntil the keys are fetched again;
// when that fails the stale key is still returned (room versions 1–4 ignore
// validity), so callers compare the returned time themselves. An unknown
// key gives ErrKeyNotFound (possibly joined with the fetch error).
func (r *Ring) VerifyKey(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
	if server == r.serverName {
		return r.ownKey(ctx, keyID)
	}
	k, found, err := r.lookup(ctx, server, keyID)
	if err != nil {
		return "", time.Time{}, err
	}
	if found && (k.Expired || !k.ValidUntil.Before(minValidUntil)) {
		return k.Key, k.ValidUntil, nil
	}
	fetchErr := r.refresh(ctx, server, keyID, minValidUntil)
	if k2, found2, err := r.lookup(ctx, server, keyID); err != nil {
		return "", time.Time{}, err
	} else if found2 {
		if fetchErr != nil {
			r.log.Debug("using stale server key", "server", server, "key_id", keyID, "err", fetchErr)
		}
		return k2.Key, k2.ValidUntil, nil
	}
	if fetchErr != nil {
		return "", time.Time{}, fmt.Errorf("key %s of %s: %w", keyID, server, errors.Join(ErrKeyNotFound, fetchErr))
	}
	return "", time.Time{}, fmt.Errorf("key %s of %s: %w", keyID, server, ErrKeyNotFound)
}

// KeyFunc returns VerifyKey bound to ctx in the shape of mautrix's
// pdu.GetKeyFunc. A key that cannot be had is reported as absent (empty
// key, no error), so that another signature of the same server may still
// verify the event.
func (r *Ring) KeyFunc(ctx context.Context) pdu.GetKeyFunc {
	return func(server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
		k, until, err := r.VerifyKey(ctx, server, keyID, minValidUntil)
		if err != nil {
			if ctx.Err() != nil {
				return "", time.Time{}, ctx.Err()
			}
			r.log.Debug("server key unavailable", "server", server, "key_id", keyID, "err", err)
			return "", time.Time{}, nil
		}
		return k, until, nil
	}
}

func (r *Ring) ownKey(ctx context.Context, keyID id.KeyID) (id.SigningKey, time.Time, error) {
	if keyID == r.own.ID {
		return r.own.Public(), r.now().Add(OwnValidity), nil
	}
	old, err := r.ownOldKeys(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	if k, ok := old[keyID]; ok {
		return k.Key, time.UnixMilli(k.ExpiredTS), nil
	}
	return "", time.Time{}, fmt.Errorf("our key %s: %w", keyID, ErrKeyNotFound)
}

func (r *Ring) ownOldKeys(ctx context.Context) (map[id.KeyID]OldVerifyKeyJSON, error) {
	rows, err := loadRows(ctx, r.db, r.serverName)
	if err != nil {
		return nil, err
	}
	old := map[id.KeyID]OldVerifyKeyJSON{}
	for _, row := range rows {
		if row.keyID != r.own.ID && row.expired > 0 {
			old[row.keyID] = OldVerifyKeyJSON{Key: row.key, ExpiredTS: row.expired}
		}
	}
	return old, nil
}

// OwnKeys returns our key response for GET /_matrix/key/v2/server: the
// current key, every retired key of ours as old_verify_keys, valid for
// OwnValidity, signed by the current key.
func (r *Ring) OwnKeys(ctx context.Context) (json.RawMessage, error) {
	old, err := r.ownOldKeys(ctx)
	if err != nil {
		return nil, err
	}
	resp := ServerKeysResp{
		ServerName:    r.serverName,
		VerifyKeys:    map[id.KeyID]VerifyKeyJSON{r.own.ID: {Key: r.own.Public()}},
		OldVerifyKeys: old,
		ValidUntilTS:  r.now().Add(OwnValidity).UnixMilli(),
	}
	if len(old) == 0 {
		resp.OldVerifyKeys = map[id.KeyID]OldVerifyKeyJSON{}
	}
	raw, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encoding our key response: %w", err)
	}
	return r.own.SignJSON(r.serverName, raw)
}

// lookup returns the key from the cache, loading the server's keys from the
// database on a miss. A load only enters the cache when no store happened
// while it read (gen unchanged), so a slow reader cannot put back keys
// older than a concurrent fetch stored.
func (r *Ring) lookup(ctx context.Context, server string, keyID id.KeyID) (Key, bool, error) {
	for attempt := 0; ; attempt++ {
		r.mu.Lock()
		cached, loaded := r.cache[server]
		gen := r.gen
		r.mu.Unlock()
		if loaded {
			k, ok := cached[keyID]
			return k, ok, nil
		}
		rows, err := loadRows(ctx, r.db, server)
		if err != nil {
			return Key{}, false, err
		}
		keys := make(map[id.KeyID]Key, len(rows))
		for _, row := range rows {
			keys[row.keyID] = row.toKey()
		}
		r.mu.Lock()
		fresh := r.gen == gen
		if fresh {
			if len(r.cache) >= maxServers {
				clear(r.cache)
			}
			r.cache[server] = keys
		}
		r.mu.Unlock()
		if fresh || attempt >= 2 {
			k, ok := keys[keyID]
			return k, ok, nil
		}
	}
}

// invalidate drops server's cached keys after a store.
func (r *Ring) invalidate(server string) {
	r.mu.Lock()
	r.gen++
	delete(r.cache, server)
	r.mu.Unlock()
}

// refresh fetches server's keys, unless a successful fetch was too recent
// to repeat.
func (r *Ring) refresh(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) error {
	if r.fetcher == nil {
		return errors.New("no federation client to fetch keys with")
	}
	r.mu.Lock()
	last, ok := r.fetched[server]
	r.mu.Unlock()
	if ok && r.now().Sub(last) < minRefetch {
		return nil
	}
	return r.once(ctx, server, func() error { return r.fetch(ctx, server, keyID, minValidUntil) })
}

// once runs fetch for server unless a fetch of it is already running (then
// it waits for that one and returns nil: the caller looks again) or its
// failures are backing off. It records the outcome for the backoff.
func (r *Ring) once(ctx context.Context, server string, fetch func() error) error {
	r.mu.Lock()
	if ch, ok := r.inflight[server]; ok {
		r.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f, ok := r.failures[server]; ok && r.now().Before(f.retryAt) {
		r.mu.Unlock()
		return ErrBackoff
	}
	ch := make(chan struct{})
	r.inflight[server] = ch
	r.mu.Unlock()

	err := fetch()

	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inflight, server)
	close(ch)
	if len(r.failures) >= maxServers {
		clear(r.failures)
	}
	if len(r.fetched) >= maxServers {
		clear(r.fetched)
	}
	switch {
	case err == nil:
		delete(r.failures, server)
		r.fetched[server] = r.now()
	case ctx.Err() == nil:
		f := r.failures[server]
		f.delay = min(max(2*f.delay, backoffMin), backoffMax)
		f.retryAt = r.now().Add(f.delay)
		r.failures[server] = f
	}
	return err
}

// fetch asks the server itself, then each notary, until one answer holds
// keyID valid until minValidUntil. Every checked answer is stored.
func (r *Ring) fetch(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) error {
	var errs []error
	have := func() bool {
		k, ok, _ := r.lookup(ctx, server, keyID)
		return ok && (k.Expired || !k.ValidUntil.Before(minValidUntil))
	}
	if err := r.fetchDirect(ctx, server); err != nil {
		errs = append(errs, err)
	} else if have() {
		return nil
	}
	for _, n := range r.notaries {
		if n.ServerName == server || n.ServerName == r.serverName {
			continue // a notary's own keys come from its key endpoint
		}
		if err := r.fetchNotary(ctx, n, server, keyID, minValidUntil); err != nil {
			errs = append(errs, err)
			continue
		}
		if have() {
			return nil
		}
	}
	return errors.Join(errs...)
}

func (r *Ring) fetchDirect(ctx context.Context, server string) error {
	raw, err := r.fetcher.ServerKeys(ctx, server)
	if err != nil {
		return fmt.Errorf("fetching keys of %s: %w", server, err)
	}
	resp, err := checkResponse(raw, server)
	if err != nil {
		return fmt.Errorf("keys served by %s: %w", server, err)
	}
	if err := storeResponse(ctx, r.db, resp, raw, r.now()); err != nil {
		return err
	}
	r.invalidate(server)
	return nil
}

func (r *Ring) fetchNotary(ctx context.Context, n config.TrustedKeyServer, server string, keyID id.KeyID, minValidUntil time.Time) error {
	var criteria QueryCriteria
	if minValidUntil.After(time.UnixMilli(0)) {
		criteria.MinimumValidUntilTS = minValidUntil.UnixMilli()
	}
	req := QueryReq{ServerKeys: map[string]map[id.KeyID]QueryCriteria{server: {keyID: criteria}}}
	qr, err := r.fetcher.QueryKeys(ctx, n.ServerName, req)
	if err != nil {
		return fmt.Errorf("querying notary %s for keys of %s: %w", n.ServerName, server, err)
	}
	stored := false
	var errs []error
	for _, raw := range qr.ServerKeys {
		resp, err := checkResponse(raw, server)
		if err != nil {
			errs = append(errs, fmt.Errorf("notary %s on %s: %w", n.ServerName, server, err))
			continue
		}
		if err := r.checkNotarySignature(ctx, n, raw); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := storeResponse(ctx, r.db, resp, raw, r.now()); err != nil {
			return err
		}
		stored = true
	}
	if stored {
		r.invalidate(server)
		return nil
	}
	if len(errs) == 0 {
		return fmt.Errorf("notary %s has no keys for %s", n.ServerName, server)
	}
	return errors.Join(errs...)
}

// checkNotarySignature requires a valid signature by the notary: with one
// of its configured keys, or, when none are configured, with a key fetched
// from the notary itself (never through another notary, so that notaries
// cannot vouch for each other in a loop).
func (r *Ring) checkNotarySignature(ctx context.Context, n config.TrustedKeyServer, raw json.RawMessage) error {
	var signed struct {
		Signatures map[string]map[id.KeyID]string `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &signed); err != nil {
		return fmt.Errorf("notary %s: %w", n.ServerName, err)
	}
	for keyID := range signed.Signatures[n.ServerName] {
		var key id.SigningKey
		if len(n.VerifyKeys) > 0 {
			key = id.SigningKey(n.VerifyKeys[string(keyID)])
		} else {
			k, found, err := r.lookup(ctx, n.ServerName, keyID)
			if err != nil {
				return err
			}
			if !found || (!k.Expired && k.ValidUntil.Before(r.now())) {
				if err := r.fetchDirect(ctx, n.ServerName); err != nil {
					return fmt.Errorf("notary %s: %w", n.ServerName, err)
				}
				k, found, _ = r.lookup(ctx, n.ServerName, keyID)
			}
			if found && !k.Expired && !k.ValidUntil.Before(r.now()) {
				key = k.Key
			}
		}
		if key != "" && VerifyJSON(n.ServerName, keyID, key, raw) == nil {
			return nil
		}
	}
	return fmt.Errorf("answer of notary %s lacks a valid signature of its own", n.ServerName)
}

// checkResponse parses a key response and checks that it names server,
// carries a validity and is signed by every key it lists as current.
func checkResponse(raw json.RawMessage, server string) (ServerKeysResp, error) {
	var resp ServerKeysResp
	if err := json.Unmarshal(raw, &resp); err != nil {
		return resp, fmt.Errorf("malformed key response: %w", err)
	}
	if resp.ServerName != server {
		return resp, fmt.Errorf("key response names server %q, want %q", resp.ServerName, server)
	}
	if resp.ValidUntilTS <= 0 {
		return resp, errors.New("key response has no valid_until_ts")
	}
	if len(resp.VerifyKeys) == 0 {
		return resp, errors.New("key response lists no verify_keys")
	}
	for keyID, k := range resp.VerifyKeys {
		if err := VerifyJSON(server, keyID, k.Key, raw); err != nil {
			return resp, fmt.Errorf("self-signature: %w", err)
		}
	}
	for keyID, k := range resp.OldVerifyKeys {
		if err := checkKey(k.Key); err != nil {
			return resp, fmt.Errorf("old key %s: %w", keyID, err)
		}
	}
	return resp, nil
}
