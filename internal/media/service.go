package media

import (
	"context"
	"crypto/rand"
	"hash/fnv"
	"log/slog"
	"regexp"
	"runtime"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/ratelimit"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Service is the content repository. It is safe for concurrent use; all
// its coordination (waiting for asynchronous uploads, one remote fetch
// per media ID, blob reference counting) is in-process, which holds
// because one Myelin process owns a database.
type Service struct {
	db         *storage.DB
	blobs      Blobs
	serverName string
	cfg        config.Media
	log        *slog.Logger
	fed        *fedclient.Client
	limiter    *ratelimit.Limiter
	now        func() time.Time

	// blobLocks serialise, per blob key (striped), storing a blob with
	// inserting the row naming it against deleting the last row and the
	// blob, so a concurrent identical upload never loses its bytes.
	blobLocks [64]sync.Mutex

	mu sync.Mutex
	// uploaded holds a channel per pending media ID that a download
	// waits on; it is closed when the bytes arrive.
	uploaded map[string]chan struct{}
	// fetches holds the remote download in progress per mxc URI.
	fetches map[string]*flight
	// thumbs holds the thumbnail being generated per blob key.
	thumbs map[string]*flight
	// thumbSlots bounds the thumbnails generated at once to the CPUs:
	// each decodes a whole image (about 60 MB for 12 megapixels).
	thumbSlots chan struct{}
}

// Option configures a Service.
type Option func(*Service)

// WithFederation lets the service fetch remote media through fed.
func WithFederation(fed *fedclient.Client) Option { return func(s *Service) { s.fed = fed } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns the content repository of serverName, its metadata in db
// and its bytes in blobs.
func New(db *storage.DB, blobs Blobs, serverName string, cfg config.Media, log *slog.Logger, opts ...Option) *Service {
	s := &Service{
		db: db, blobs: blobs, serverName: serverName, cfg: cfg, log: log, now: time.Now,
		limiter:  ratelimit.New(cfg.RcMediaCreate.PerSecond, cfg.RcMediaCreate.BurstCount),
		uploaded: map[string]chan struct{}{},
		fetches:  map[string]*flight{},
		thumbs:   map[string]*flight{},

		thumbSlots: make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// MaxUploadSize is the upload limit in bytes (for the config endpoint).
func (s *Service) MaxUploadSize() int64 { return int64(s.cfg.MaxUploadSize) }

// ServerName is the server name in the mxc URIs of local media.
func (s *Service) ServerName() string { return s.serverName }

var mediaIDForm = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// ValidMediaID reports whether mediaID has only the characters the spec
// allows (A-Z a-z 0-9 _ -), which also keeps it safe in paths and URLs.
func ValidMediaID(mediaID string) bool { return mediaIDForm.MatchString(mediaID) }

var serverNameForm = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$`)

// ValidServerName reports whether name is a server name per the spec's
// grammar (a DNS name, IPv4 or bracketed IPv6 literal, optional port).
func ValidServerName(name string) bool { return len(name) <= 255 && serverNameForm.MatchString(name) }

const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newMediaID returns 24 random letters, as Synapse's media IDs.
func newMediaID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idChars[int(b[i])%len(idChars)]
	}
	return string(b)
}

func (s *Service) blobLock(key string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return &s.blobLocks[h.Sum32()%uint32(len(s.blobLocks))]
}

func uriOf(server, mediaID string) id.ContentURI {
	return id.ContentURI{Homeserver: server, FileID: mediaID}
}

func nowMS(t time.Time) int64 { return t.UnixMilli() }

// flight is one operation that concurrent callers wait for.
type flight struct {
	done chan struct{}
	err  error
}

// once runs fn for key unless a run is in progress, whose end it then
// awaits; the caller's ctx bounds only its own wait. fn runs detached
// from any one caller's context.
func (s *Service) once(ctx context.Context, flights map[string]*flight, key string, fn func(ctx context.Context) error) error {
	s.mu.Lock()
	f, running := flights[key]
	if !running {
		f = &flight{done: make(chan struct{})}
		flights[key] = f
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
			defer cancel()
			f.err = fn(fctx)
			s.mu.Lock()
			delete(flights, key)
			s.mu.Unlock()
			close(f.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
