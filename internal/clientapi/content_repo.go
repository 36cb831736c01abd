package clientapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// The content repository (content-repo.yaml): uploads, asynchronous
// uploads, and the deprecated unauthenticated downloads, which serve only
// media stored before enable_authenticated_media froze them. The logic is
// in package media.

// WithMedia serves the content repository from m.
func WithMedia(m *media.Service) Option { return func(a *API) { a.media = m } }

// withMediaHeaders sets the media security headers on every answer of a
// media endpoint, errors included.
func withMediaHeaders(h httpx.HandlerFunc) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		media.SecurityHeaders(w.Header())
		return h(w, r)
	}
}

// uploadContent is POST /_matrix/media/v3/upload (content-repo.yaml).
// The general request body limit does not apply (see homeserver); the
// upload is streamed to disk up to max_upload_size.
func (a *API) uploadContent(w http.ResponseWriter, r *http.Request) error {
	sess := session(r)
	uri, err := a.media.Upload(r.Context(), sess.UserID, r.Header.Get("Content-Type"), r.URL.Query().Get("filename"),
		r.Body, r.ContentLength)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]string{"content_uri": uri.String()})
}

// createContent is POST /_matrix/media/v1/create (content-repo.yaml).
func (a *API) createContent(w http.ResponseWriter, r *http.Request) error {
	uri, expires, err := a.media.Create(r.Context(), session(r).UserID)
	if err != nil {
		return err
	}
	return httpx.OK(w, map[string]any{"content_uri": uri.String(), "unused_expires_at": expires.UnixMilli()})
}

// uploadContentToMXC is PUT /_matrix/media/v3/upload/{serverName}/{mediaId}
// (content-repo.yaml).
func (a *API) uploadContentToMXC(w http.ResponseWriter, r *http.Request) error {
	err := a.media.UploadTo(r.Context(), session(r).UserID, r.PathValue("serverName"), r.PathValue("mediaId"),
		r.Header.Get("Content-Type"), r.URL.Query().Get("filename"), r.Body, r.ContentLength)
	if err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// mediaTimeout reads timeout_ms.
func mediaTimeout(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("timeout_ms")
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms < 0 {
		return 0, mxerr.InvalidParam.With("timeout_ms must be a non-negative integer")
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// download serves {serverName}/{mediaId}, named after {fileName} when
// the path has one.
func (a *API) download(w http.ResponseWriter, r *http.Request, legacy bool) error {
	timeout, err := mediaTimeout(r)
	if err != nil {
		return err
	}
	if legacy && r.URL.Query().Get("allow_remote") == "false" && r.PathValue("serverName") != a.media.ServerName() {
		return mxerr.NotFound.With("media not found")
	}
	c, err := a.media.Download(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"),
		media.Access{Legacy: legacy, Timeout: timeout})
	if err != nil {
		return err
	}
	media.Serve(w, r, c, r.PathValue("fileName"))
	return nil
}

// getContent is GET /_matrix/media/v3/download/{serverName}/{mediaId}
// (content-repo.yaml, deprecated).
func (a *API) getContent(w http.ResponseWriter, r *http.Request) error { return a.download(w, r, true) }

// getContentOverrideName is GET
// /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}
// (content-repo.yaml, deprecated).
func (a *API) getContentOverrideName(w http.ResponseWriter, r *http.Request) error {
	return a.download(w, r, true)
}

// getConfig is GET /_matrix/media/v3/config (content-repo.yaml, deprecated).
func (a *API) getConfig(w http.ResponseWriter, r *http.Request) error {
	return httpx.OK(w, map[string]int64{"m.upload.size": a.media.MaxUploadSize()})
}

// thumbnailReq reads width, height, method and animated.
func thumbnailReq(r *http.Request) (media.ThumbnailReq, error) {
	q := r.URL.Query()
	var req media.ThumbnailReq
	for _, p := range []struct {
		name string
		dst  *int
	}{{"width", &req.Width}, {"height", &req.Height}} {
		v := q.Get(p.name)
		if v == "" {
			return req, mxerr.MissingParam.With("%s is required", p.name)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return req, mxerr.InvalidParam.With("%s must be a positive integer", p.name)
		}
		*p.dst = n
	}
	req.Method = q.Get("method")
	switch q.Get("animated") {
	case "", "false":
	case "true":
		req.Animated = true
	default:
		return req, mxerr.InvalidParam.With("animated must be true or false")
	}
	return req, nil
}

// thumbnail serves a thumbnail of {serverName}/{mediaId}.
func (a *API) thumbnail(w http.ResponseWriter, r *http.Request, legacy bool) error {
	req, err := thumbnailReq(r)
	if err != nil {
		return err
	}
	timeout, err := mediaTimeout(r)
	if err != nil {
		return err
	}
	c, err := a.media.Thumbnail(r.Context(), r.PathValue("serverName"), r.PathValue("mediaId"), req,
		media.Access{Legacy: legacy, Timeout: timeout})
	if err != nil {
		return err
	}
	media.Serve(w, r, c, "")
	return nil
}

// getContentThumbnail is GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}
// (content-repo.yaml, deprecated).
func (a *API) getContentThumbnail(w http.ResponseWriter, r *http.Request) error {
	return a.thumbnail(w, r, true)
}
