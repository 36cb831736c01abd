package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// Adopter is a Blobs store that can take a finished file from its
// TempDir without copying it (diskstore). Other stores get Put.
type Adopter interface {
	TempDir() string
	Adopt(ctx context.Context, key, tmpPath string) error
}

// spooled is content written to a temporary file, hashed on the way.
type spooled struct {
	path   string
	sha256 string
	size   int64
}

func (s *Service) tempDir() string {
	if a, ok := s.blobs.(Adopter); ok {
		return a.TempDir()
	}
	return os.TempDir()
}

// errTooLarge marks content over the size limit while spooling, and
// errRead a body that could not be read (the sender went away).
var (
	errTooLarge = errors.New("media larger than the limit")
	errRead     = errors.New("reading the media failed")
)

// readErrs remembers the error of its reader, to tell a broken upload
// (the client's doing) from a failing disk (ours).
type readErrs struct {
	r   io.Reader
	err error
}

func (e *readErrs) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// spool copies r to a temporary file, at most max bytes (errTooLarge
// past that), hashing as it writes: content is never held in memory.
func (s *Service) spool(r io.Reader, max int64) (*spooled, error) {
	f, err := os.CreateTemp(s.tempDir(), "upload-*")
	if err != nil {
		return nil, fmt.Errorf("spooling media: %w", err)
	}
	h := sha256.New()
	src := &readErrs{r: io.LimitReader(r, max+1)}
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if src.err != nil {
		err = fmt.Errorf("%w: %w", errRead, src.err)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > max {
		err = errTooLarge
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	return &spooled{path: f.Name(), sha256: hex.EncodeToString(h.Sum(nil)), size: n}, nil
}

// storeBlob moves spooled content into the blob store under its digest
// (a no-op when identical content is there already). The caller holds the
// blob's lock and removes nothing afterwards.
func (s *Service) storeBlob(ctx context.Context, sp *spooled) error {
	if a, ok := s.blobs.(Adopter); ok {
		return a.Adopt(ctx, sp.sha256, sp.path)
	}
	defer os.Remove(sp.path)
	f, err := os.Open(sp.path)
	if err != nil {
		return fmt.Errorf("reading spooled media: %w", err)
	}
	defer f.Close()
	return s.blobs.Put(ctx, sp.sha256, f, sp.size)
}

// persist stores the spooled bytes and, in the same blob lock, writes the
// row (record is the insert or update that names the blob).
func (s *Service) persist(ctx context.Context, sp *spooled, record func() error) error {
	l := s.blobLock(sp.sha256)
	l.Lock()
	defer l.Unlock()
	if err := s.storeBlob(ctx, sp); err != nil {
		os.Remove(sp.path)
		return err
	}
	return record()
}

func normaliseType(contentType string) string {
	contentType = strings.TrimSpace(contentType)
	if contentType == "" {
		return "application/octet-stream"
	}
	return contentType
}

// checkUpload applies the per-user rate limit, the size limit on the
// announced length and the quota.
func (s *Service) checkUpload(ctx context.Context, owner id.UserID, length int64) error {
	if ok, retry := s.limiter.Allow(owner.String()); !ok {
		return mxerr.LimitExceeded.With("too many uploads").WithField("retry_after_ms", retry.Milliseconds())
	}
	if length > int64(s.cfg.MaxUploadSize) {
		return mxerr.TooLarge.With("upload larger than %d bytes", s.cfg.MaxUploadSize)
	}
	if s.cfg.MediaUserQuota > 0 {
		used, _, err := s.userUsage(ctx, owner)
		if err != nil {
			return err
		}
		if used+max(length, 0) > int64(s.cfg.MediaUserQuota) {
			return mxerr.Forbidden.With("media quota of %d bytes reached", s.cfg.MediaUserQuota)
		}
	}
	return nil
}

// afterSpool checks the quota again with the real size (the length may
// not have been announced).
func (s *Service) afterSpool(ctx context.Context, owner id.UserID, sp *spooled) error {
	if s.cfg.MediaUserQuota <= 0 {
		return nil
	}
	used, _, err := s.userUsage(ctx, owner)
	if err != nil {
		return err
	}
	if used+sp.size > int64(s.cfg.MediaUserQuota) {
		return mxerr.Forbidden.With("media quota of %d bytes reached", s.cfg.MediaUserQuota)
	}
	return nil
}

func (s *Service) spoolUpload(r io.Reader, max int64) (*spooled, error) {
	sp, err := s.spool(r, max)
	if errors.Is(err, errTooLarge) {
		return nil, mxerr.TooLarge.With("upload larger than %d bytes", max)
	}
	if errors.Is(err, errRead) {
		return nil, mxerr.Unknown.Wrap(err).With("the upload was cut short").WithStatus(http.StatusBadRequest)
	}
	if err != nil {
		return nil, mxerr.Unknown.Wrap(err).With("reading the upload failed")
	}
	return sp, nil
}

// Upload stores a user's upload (POST /_matrix/media/v3/upload) as a new
// local media item. length is the announced Content-Length (-1 if none).
func (s *Service) Upload(ctx context.Context, owner id.UserID, contentType, fileName string, r io.Reader, length int64) (id.ContentURI, error) {
	if err := s.checkUpload(ctx, owner, length); err != nil {
		return id.ContentURI{}, err
	}
	sp, err := s.spoolUpload(r, int64(s.cfg.MaxUploadSize))
	if err != nil {
		return id.ContentURI{}, err
	}
	if err := s.afterSpool(ctx, owner, sp); err != nil {
		os.Remove(sp.path)
		return id.ContentURI{}, err
	}
	return s.create(ctx, owner, contentType, fileName, sp)
}

// UploadFromServer stores bytes the server itself fetched (URL preview
// images) as a new local media item owned by owner, without the user's
// rate limit or quota. More than maxSize bytes fail with M_TOO_LARGE.
func (s *Service) UploadFromServer(ctx context.Context, owner id.UserID, contentType, fileName string, r io.Reader, maxSize int64) (id.ContentURI, error) {
	sp, err := s.spoolUpload(r, maxSize)
	if err != nil {
		return id.ContentURI{}, err
	}
	return s.create(ctx, owner, contentType, fileName, sp)
}

func (s *Service) create(ctx context.Context, owner id.UserID, contentType, fileName string, sp *spooled) (id.ContentURI, error) {
	now := nowMS(s.now())
	it := &Item{
		Server: s.serverName, MediaID: newMediaID(), UserID: owner, ContentType: normaliseType(contentType),
		FileName: fileName, Size: sp.size, SHA256: sp.sha256, CreatedTS: now, LastAccessTS: now,
		Authenticated: s.cfg.EnableAuthenticatedMedia,
	}
	if err := s.persist(ctx, sp, func() error { return s.insertItem(ctx, s.db, it) }); err != nil {
		return id.ContentURI{}, err
	}
	s.log.Debug("media uploaded", "user_id", owner, "media_id", it.MediaID, "size", it.Size)
	return it.URI(), nil
}

// Create reserves a media ID for a later upload (POST /_matrix/media/v1/create)
// and returns it with the time it expires unused.
func (s *Service) Create(ctx context.Context, owner id.UserID) (id.ContentURI, time.Time, error) {
	if ok, retry := s.limiter.Allow(owner.String()); !ok {
		return id.ContentURI{}, time.Time{}, mxerr.LimitExceeded.With("too many media IDs created").WithField("retry_after_ms", retry.Milliseconds())
	}
	_, pending, err := s.userUsage(ctx, owner)
	if err != nil {
		return id.ContentURI{}, time.Time{}, err
	}
	if pending >= int64(s.cfg.MaxPendingMediaUploads) {
		return id.ContentURI{}, time.Time{}, mxerr.LimitExceeded.With("%d media uploads are pending already", pending).
			WithField("retry_after_ms", int64(60_000))
	}
	now := s.now()
	expires := now.Add(time.Duration(s.cfg.UnusedExpirationTime))
	it := &Item{
		Server: s.serverName, MediaID: newMediaID(), UserID: owner, ContentType: "", CreatedTS: nowMS(now),
		LastAccessTS: nowMS(now), PendingUntil: nowMS(expires), Authenticated: s.cfg.EnableAuthenticatedMedia,
	}
	if err := s.insertItem(ctx, s.db, it); err != nil {
		return id.ContentURI{}, time.Time{}, err
	}
	return it.URI(), expires, nil
}

// UploadTo puts the bytes of a media ID reserved with Create
// (PUT /_matrix/media/v3/upload/{serverName}/{mediaId}).
func (s *Service) UploadTo(ctx context.Context, owner id.UserID, server, mediaID, contentType, fileName string, r io.Reader, length int64) error {
	it, err := s.item(ctx, server, mediaID)
	if err != nil {
		return err
	}
	now := nowMS(s.now())
	switch {
	case server != s.serverName || it == nil || it.Quarantined || (it.PendingUntil > 0 && it.PendingUntil <= now):
		return mxerr.NotFound.With("unknown media ID")
	case it.UserID != owner:
		return mxerr.Forbidden.With("the media ID was created by another user")
	case it.PendingUntil == 0:
		return mxerr.CannotOverwriteMedia.With("media already uploaded")
	}
	if err := s.checkUpload(ctx, owner, length); err != nil {
		return err
	}
	sp, err := s.spoolUpload(r, int64(s.cfg.MaxUploadSize))
	if err != nil {
		return err
	}
	if err := s.afterSpool(ctx, owner, sp); err != nil {
		os.Remove(sp.path)
		return err
	}
	var updated int64
	err = s.persist(ctx, sp, func() error {
		// The pending_until condition makes concurrent PUTs race safely:
		// one wins, the others overwrite nothing.
		res, err := s.db.ExecContext(ctx, `UPDATE media SET content_type = $1, file_name = $2, size = $3, sha256 = $4,
			pending_until = 0, last_access_ts = $5 WHERE server_name = $6 AND media_id = $7 AND pending_until > $5`,
			normaliseType(contentType), fileName, sp.size, sp.sha256, now, server, mediaID)
		if err != nil {
			return fmt.Errorf("recording the upload of %s: %w", mediaID, err)
		}
		updated, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return err
	}
	if updated == 0 {
		// Lost the race: the blob may now be unreferenced.
		s.collect(ctx, sp.sha256)
		return mxerr.CannotOverwriteMedia.With("media already uploaded")
	}
	s.signalUploaded(server, mediaID)
	return nil
}

// signalUploaded wakes the downloads waiting for a pending media ID.
func (s *Service) signalUploaded(server, mediaID string) {
	key := server + "/" + mediaID
	s.mu.Lock()
	if ch, ok := s.uploaded[key]; ok {
		close(ch)
		delete(s.uploaded, key)
	}
	s.mu.Unlock()
}

// uploadSignal returns the channel closed when mediaID's bytes arrive.
func (s *Service) uploadSignal(server, mediaID string) <-chan struct{} {
	key := server + "/" + mediaID
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.uploaded[key]
	if !ok {
		ch = make(chan struct{})
		s.uploaded[key] = ch
	}
	return ch
}
