// Package preview serves URL previews (GET /_matrix/client/v1/media/
// preview_url): it fetches the page a user asks about through netguard's
// dialer, so no preview reaches loopback, private or otherwise refused
// addresses unless the operator allowlists them, parses its OpenGraph tags
// (falling back to <title>, the meta description and the largest image),
// and stores the preview image in the media repository through Uploader,
// naming it by its mxc URI. Results are cached in memory for an hour and
// each URL is fetched by one request at a time.
//
// preview imports netguard, config, mxerr; clientapi registers its route
// and homeserver builds it. It must not import media: the media service
// implements Uploader.
package preview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/netguard"
)

// Uploader stores a fetched preview image as local media owned by owner
// and returns its URI. The media service implements it; r yields at most
// maxSize bytes or the upload fails.
type Uploader interface {
	UploadFromServer(ctx context.Context, owner id.UserID, contentType, fileName string, r io.Reader, maxSize int64) (id.ContentURI, error)
}

const (
	// cacheTTL is how long a preview is served from memory before the URL
	// is fetched again, as in Synapse.
	cacheTTL = time.Hour
	// failureTTL is how long a failed preview is answered from memory:
	// long enough to spare a failing site a herd of retries, short enough
	// that a passing failure does not stick for the hour Synapse keeps it.
	failureTTL = time.Minute
	// cacheSize bounds the number of URLs remembered.
	cacheSize = 4096
	// fetchTimeout bounds each HTTP fetch, headers and body included.
	fetchTimeout = 10 * time.Second
	// previewTimeout bounds a whole preview: the page and its image.
	previewTimeout = 30 * time.Second
	// maxRedirects is the longest redirect chain followed; every hop is
	// checked against the URL blacklist and, on connect, the guard.
	maxRedirects = 5
	// maxFetches bounds the previews being fetched at once, whoever asks.
	maxFetches = 16
	userAgent  = "Myelin (bot; URL preview)"
)

// Service makes URL previews. It is safe for concurrent use.
type Service struct {
	log      *slog.Logger
	guard    *netguard.Guard
	client   *http.Client
	uploader Uploader
	rules    []urlRule
	maxSize  int64
	now      func() time.Time

	cache *lru.Cache[string, cached]
	slots chan struct{}
	mu    sync.Mutex
	// inflight holds the fetch under way per URL; later askers wait on it.
	inflight map[string]*flight
}

type cached struct {
	og      json.RawMessage
	err     error
	expires time.Time
}

type flight struct {
	done chan struct{}
	res  cached
}

// New builds the service from cfg. up may be nil: previews then carry no
// og:image.
func New(cfg config.URLPreview, up Uploader, log *slog.Logger) (*Service, error) {
	allow, err := netguard.ParsePrefixes(cfg.IPRangeWhitelist)
	if err != nil {
		return nil, fmt.Errorf("url_preview_ip_range_whitelist: %w", err)
	}
	deny, err := netguard.ParsePrefixes(cfg.IPRangeBlacklist)
	if err != nil {
		return nil, fmt.Errorf("url_preview_ip_range_blacklist: %w", err)
	}
	rules, err := compileURLRules(cfg.URLBlacklist)
	if err != nil {
		return nil, fmt.Errorf("url_preview_url_blacklist: %w", err)
	}
	cache, err := lru.New[string, cached](cacheSize)
	if err != nil {
		return nil, err
	}
	s := &Service{
		log: log, guard: netguard.New(allow, deny), uploader: up, rules: rules,
		maxSize: cfg.MaxSpiderSize, now: time.Now, cache: cache, inflight: map[string]*flight{},
		slots: make(chan struct{}, maxFetches),
	}
	if s.maxSize <= 0 {
		s.maxSize = 10 << 20
	}
	s.client = &http.Client{
		Transport:     s.guard.Transport(),
		Timeout:       fetchTimeout,
		CheckRedirect: s.checkRedirect,
	}
	return s, nil
}

// Preview returns the OpenGraph JSON object of rawURL, fetched for user
// (who owns the stored image), from the cache when it is fresh. Errors are
// *mxerr.Error values ready for the client.
func (s *Service) Preview(ctx context.Context, user id.UserID, rawURL string) (json.RawMessage, error) {
	u, err := s.parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	key := u.String()
	if c, ok := s.cache.Get(key); ok && s.now().Before(c.expires) {
		return c.og, c.err
	}
	s.mu.Lock()
	f, ok := s.inflight[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		s.inflight[key] = f
		// The fetch outlives the asker's request: others may be waiting
		// for it, and its result is cached.
		go s.run(context.WithoutCancel(ctx), f, key, u, user)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.res.og, f.res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Service) run(ctx context.Context, f *flight, key string, u *url.URL, user id.UserID) {
	ctx, cancel := context.WithTimeout(ctx, previewTimeout)
	defer cancel()
	var og map[string]any
	var err error
	select {
	case s.slots <- struct{}{}:
		og, err = s.build(ctx, u, user)
		<-s.slots
	case <-ctx.Done():
		err = mxerr.Unknown.WithStatus(http.StatusServiceUnavailable).With("Too many URL previews at once, try again")
	}
	var raw json.RawMessage
	if err == nil {
		raw, err = json.Marshal(og)
	}
	ttl := cacheTTL
	if err != nil {
		ttl = failureTTL
	}
	f.res = cached{og: raw, err: err, expires: s.now().Add(ttl)}
	s.cache.Add(key, f.res)
	s.mu.Lock()
	delete(s.inflight, key)
	s.mu.Unlock()
	close(f.done)
}

// parseURL accepts absolute http(s) URLs that the URL blacklist and, for
// IP literals, the guard allow.
func (s *Service) parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, mxerr.InvalidParam.With("url must be an absolute http or https URL")
	}
	u.Fragment, u.RawFragment = "", ""
	if err := s.allowed(u); err != nil {
		return nil, err
	}
	return u, nil
}

// allowed checks u against the URL blacklist and, when its host is an IP
// address, against the guard before any connection is attempted.
func (s *Service) allowed(u *url.URL) error {
	for _, r := range s.rules {
		if r.matches(u) {
			return mxerr.Unknown.WithStatus(http.StatusForbidden).With("URL blocked")
		}
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		if err := s.guard.Check(ip); err != nil {
			return mxerr.Unknown.WithStatus(http.StatusForbidden).With("IP address blocked").Wrap(err)
		}
	}
	return nil
}

func (s *Service) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return errTooManyRedirects
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return errRedirectScheme
	}
	return s.allowed(req.URL)
}

var (
	errTooManyRedirects = errors.New("too many redirects")
	errRedirectScheme   = errors.New("redirect to a URL that is not http or https")
)
