package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// Access says how content was asked for.
type Access struct {
	// Legacy marks the unauthenticated /_matrix/media endpoints: with
	// enable_authenticated_media on they serve only media stored before.
	Legacy bool
	// Federation marks another server asking: only local media is served.
	Federation bool
	// Timeout bounds the wait for a pending upload (timeout_ms); zero
	// means the spec's default of 20 s.
	Timeout time.Duration
}

// DefaultTimeout and MaxTimeout bound timeout_ms, as in Synapse.
const (
	DefaultTimeout = 20 * time.Second
	MaxTimeout     = 120 * time.Second
)

func (a Access) timeout() time.Duration {
	switch {
	case a.Timeout <= 0:
		return DefaultTimeout
	case a.Timeout > MaxTimeout:
		return MaxTimeout
	}
	return a.Timeout
}

// Content is media ready to be served: its metadata and its bytes. The
// caller closes Body, which is an io.ReadSeeker when the store allows
// (range requests).
type Content struct {
	Item
	Body io.ReadCloser
}

// Download returns the content of an mxc URI: local media (waiting up to
// the timeout for a pending upload), or remote media from the cache or
// fetched from its origin.
func (s *Service) Download(ctx context.Context, server, mediaID string, acc Access) (*Content, error) {
	it, err := s.lookup(ctx, server, mediaID, acc)
	if err != nil {
		return nil, err
	}
	body, size, err := s.blobs.Open(ctx, it.SHA256)
	if errors.Is(err, ErrBlobNotFound) {
		s.log.Warn("media blob missing", "server", server, "media_id", mediaID, "sha256", it.SHA256)
		return nil, mxerr.NotFound.With("media not found")
	}
	if err != nil {
		return nil, err
	}
	s.touch(ctx, it)
	c := &Content{Item: *it, Body: body}
	c.Size = size
	return c, nil
}

// lookup returns the servable item of server/mediaID.
func (s *Service) lookup(ctx context.Context, server, mediaID string, acc Access) (*Item, error) {
	if !ValidServerName(server) {
		return nil, mxerr.InvalidParam.With("invalid server name %q", server)
	}
	if !ValidMediaID(mediaID) {
		return nil, mxerr.NotFound.With("media not found")
	}
	if server == s.serverName {
		return s.local(ctx, mediaID, acc)
	}
	if acc.Federation {
		return nil, mxerr.NotFound.With("media not found")
	}
	it, err := s.item(ctx, server, mediaID)
	if err != nil {
		return nil, err
	}
	if it == nil {
		// What would be fetched now is stored as authenticated media,
		// which the frozen legacy endpoints do not serve.
		if s.fed == nil || (acc.Legacy && s.cfg.EnableAuthenticatedMedia) {
			return nil, mxerr.NotFound.With("media not found")
		}
		if err := s.fetchRemote(ctx, server, mediaID, acc.timeout()); err != nil {
			return nil, err
		}
		if it, err = s.item(ctx, server, mediaID); err != nil {
			return nil, err
		}
		if it == nil {
			return nil, mxerr.NotFound.With("media not found")
		}
	}
	return s.visible(it, acc)
}

// visible hides quarantined media, and frozen media on legacy endpoints.
func (s *Service) visible(it *Item, acc Access) (*Item, error) {
	if it.Quarantined || (acc.Legacy && s.cfg.EnableAuthenticatedMedia && it.Authenticated) {
		return nil, mxerr.NotFound.With("media not found")
	}
	return it, nil
}

// local returns a local item, waiting for a pending upload until the
// access's timeout, woken by UploadTo (never polling).
func (s *Service) local(ctx context.Context, mediaID string, acc Access) (*Item, error) {
	timer := time.NewTimer(acc.timeout())
	defer timer.Stop()
	for {
		it, err := s.item(ctx, s.serverName, mediaID)
		if err != nil {
			return nil, err
		}
		if it == nil || (it.PendingUntil > 0 && it.PendingUntil <= nowMS(s.now())) {
			return nil, mxerr.NotFound.With("media not found")
		}
		if _, err := s.visible(it, acc); err != nil {
			return nil, err
		}
		if it.PendingUntil == 0 {
			return it, nil
		}
		ch := s.uploadSignal(s.serverName, mediaID)
		// The upload may have finished between the read and registering.
		if again, err := s.item(ctx, s.serverName, mediaID); err == nil && again != nil && again.PendingUntil == 0 {
			return s.visible(again, acc)
		}
		select {
		case <-ch:
		case <-timer.C:
			return nil, mxerr.NotYetUploaded.With("content has not yet been uploaded")
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the upload of %s: %w", mediaID, ctx.Err())
		}
	}
}
