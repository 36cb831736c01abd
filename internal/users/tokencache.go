package users

import (
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// Every client request authenticates, and a /sync long-poll that wakes up
// for each message in a busy room authenticates again each time: on
// PostgreSQL that lookup was one more round trip per request. Sessions are
// therefore cached by token hash.
//
// The cache is only correct because every change to a token, or to the
// account fields a Session carries, goes through this package (Login,
// LogoutAll, DeleteDevices, Deactivate), and each of them calls
// forgetUser after its write commits. Writes made behind Myelin's back
// (another process, SQL by hand) are picked up after tokenCacheTTL at the
// latest. Nothing may change accounts.is_admin, accounts.deactivated or
// access_tokens outside this package without calling forgetUser.
const (
	// tokenCacheTTL bounds how long a cached session is trusted.
	tokenCacheTTL = 5 * time.Minute
	// tokenCacheMax bounds the number of cached sessions; when full, the
	// cache is emptied (a cheap policy: entries are rebuilt on demand).
	tokenCacheMax = 50000
)

type cachedSession struct {
	sess    Session
	expires time.Time
}

// tokenCache maps token hashes to sessions.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedSession
	// gen moves on every invalidation. A lookup that started before an
	// invalidation does not store its (possibly stale) result, so a
	// logout racing with an authentication cannot leave the revoked token
	// cached.
	gen uint64
}

// get returns the cached session of hash, and the generation to pass to
// put when there is none.
func (c *tokenCache) get(hash string, now time.Time) (Session, bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[hash]
	if ok && now.Before(e.expires) {
		return e.sess, true, c.gen
	}
	if ok {
		delete(c.m, hash)
	}
	return Session{}, false, c.gen
}

// put caches sess under hash unless an invalidation happened since gen
// was read, never past until (the token's own expiry; zero: none).
func (c *tokenCache) put(hash string, sess Session, gen uint64, now, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = make(map[string]cachedSession)
	}
	expires := now.Add(tokenCacheTTL)
	if !until.IsZero() && until.Before(expires) {
		expires = until
	}
	c.m[hash] = cachedSession{sess: sess, expires: expires}
}

// forgetUser drops every cached session of user. Invalidations are rare
// (logout, device deletion, deactivation, a login replacing a device's
// token), so a scan is fine.
func (c *tokenCache) forgetUser(user id.UserID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h, e := range c.m {
		if e.sess.UserID == user {
			delete(c.m, h)
		}
	}
}
