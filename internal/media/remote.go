package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// fetchRemote downloads server/mediaID into the cache. Concurrent
// requests for one URI share one download.
func (s *Service) fetchRemote(ctx context.Context, server, mediaID string, timeout time.Duration) error {
	return s.once(ctx, s.fetches, server+"/"+mediaID, func(ctx context.Context) error {
		return s.fetch(ctx, server, mediaID, timeout)
	})
}

// fetch asks the origin with the authenticated federation endpoint
// (spec v1.11), and servers that do not know it with the legacy
// /_matrix/media/v3/download and allow_remote=false.
func (s *Service) fetch(ctx context.Context, server, mediaID string, timeout time.Duration) error {
	if it, err := s.item(ctx, server, mediaID); err != nil || it != nil {
		return err // cached by a fetch that just finished
	}
	q := url.Values{"timeout_ms": {strconv.FormatInt(timeout.Milliseconds(), 10)}}
	var body io.Reader
	var contentType, disposition string
	resp, err := s.fed.Stream(ctx, server, "/_matrix/federation/v1/media/download/"+url.PathEscape(mediaID), q)
	switch {
	case err == nil:
		defer resp.Body.Close()
		var closeLoc func()
		body, contentType, disposition, closeLoc, err = s.mediaPart(ctx, resp)
		if err != nil {
			return mxerr.Unknown.Wrap(err).With("the origin server sent unusable media").WithStatus(http.StatusBadGateway)
		}
		defer closeLoc()
	case legacyOnly(err):
		q.Set("allow_remote", "false")
		resp, err = s.fed.Stream(ctx, server, "/_matrix/media/v3/download/"+url.PathEscape(server)+"/"+url.PathEscape(mediaID), q)
		if err != nil {
			return remoteError(err)
		}
		defer resp.Body.Close()
		body, contentType, disposition = resp.Body, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition")
	default:
		return remoteError(err)
	}
	sp, err := s.spool(body, int64(s.cfg.MaxUploadSize))
	if errors.Is(err, errTooLarge) {
		return mxerr.TooLarge.With("remote media larger than %d bytes", s.cfg.MaxUploadSize).WithStatus(http.StatusBadGateway)
	}
	if err != nil {
		return mxerr.Unknown.Wrap(err).With("fetching remote media failed").WithStatus(http.StatusBadGateway)
	}
	now := nowMS(s.now())
	it := &Item{
		Server: server, MediaID: mediaID, ContentType: normaliseType(contentType), FileName: fileNameOf(disposition),
		Size: sp.size, SHA256: sp.sha256, CreatedTS: now, LastAccessTS: now, Authenticated: s.cfg.EnableAuthenticatedMedia,
	}
	err = s.persist(ctx, sp, func() error {
		if err := s.insertItem(ctx, s.db, it); err != nil && !storage.IsUniqueViolation(err) {
			return err
		}
		return nil
	})
	if err == nil {
		s.log.Debug("remote media cached", "server", server, "media_id", mediaID, "size", sp.size)
	}
	return err
}

// mediaPart reads the multipart/mixed answer of a federation download:
// a JSON part (metadata, ignored) then the bytes, or a Location to fetch
// them from (with the federation address rules).
func (s *Service) mediaPart(ctx context.Context, resp *http.Response) (io.Reader, string, string, func(), error) {
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return nil, "", "", nil, fmt.Errorf("answer is %q, not multipart/mixed", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	meta, err := mr.NextRawPart()
	if err != nil {
		return nil, "", "", nil, fmt.Errorf("reading the metadata part: %w", err)
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(meta, 64<<10)); err != nil {
		return nil, "", "", nil, fmt.Errorf("reading the metadata part: %w", err)
	}
	part, err := mr.NextRawPart()
	if err != nil {
		return nil, "", "", nil, fmt.Errorf("reading the media part: %w", err)
	}
	if loc := part.Header.Get("Location"); loc != "" {
		r, err := s.fed.FetchURL(ctx, loc)
		if err != nil {
			return nil, "", "", nil, err
		}
		return r.Body, r.Header.Get("Content-Type"), r.Header.Get("Content-Disposition"), func() { r.Body.Close() }, nil
	}
	return part, part.Header.Get("Content-Type"), part.Header.Get("Content-Disposition"), func() {}, nil
}

// legacyOnly reports whether the origin does not know the federation
// media endpoints (servers before spec v1.11 answer 404 M_UNRECOGNIZED,
// or a plain 404, 400, 405 or 501).
func legacyOnly(err error) bool {
	var fe *fedclient.Error
	if !errors.As(err, &fe) {
		return false
	}
	switch fe.Status {
	case http.StatusNotFound:
		return fe.Code == "" || fe.Code == "M_UNRECOGNIZED"
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return fe.Code == "" || fe.Code == "M_UNRECOGNIZED"
	}
	return false
}

// remoteError maps the origin's failure to the answer for our client: a
// 404 stays 404, not-yet-uploaded stays 504, anything else is 502.
func remoteError(err error) error {
	var fe *fedclient.Error
	if errors.As(err, &fe) {
		switch {
		case fe.Status == http.StatusNotFound:
			return mxerr.NotFound.With("media not found")
		case fe.Code == "M_NOT_YET_UPLOADED":
			return mxerr.NotYetUploaded.With("content has not yet been uploaded")
		case fe.Code == "M_TOO_LARGE":
			return mxerr.TooLarge.With("remote media too large").WithStatus(http.StatusBadGateway)
		}
	}
	return mxerr.Unknown.Wrap(err).With("failed to fetch remote media").WithStatus(http.StatusBadGateway)
}

// fileNameOf returns the file name of a Content-Disposition value (its
// filename* form decoded), or "".
func fileNameOf(disposition string) string {
	if disposition == "" {
		return ""
	}
	_, params, err := mime.ParseMediaType(disposition)
	if err != nil {
		return ""
	}
	return params["filename"]
}
