package federationapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// WithMedia serves this server's media to other servers from m.
func WithMedia(m *media.Service) Option { return func(a *API) { a.media = m } }

// mediaAccess is how another server asks: local media only, waiting for
// a pending upload up to timeout_ms.
func mediaAccess(r *http.Request) (media.Access, error) {
	acc := media.Access{Federation: true}
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return acc, mxerr.InvalidParam.With("timeout_ms must be a non-negative integer")
		}
		acc.Timeout = time.Duration(ms) * time.Millisecond
	}
	return acc, nil
}

// getContent is GET /_matrix/federation/v1/media/download/{mediaId}
// (content_repository.yaml): multipart/mixed with an empty JSON part and
// the bytes.
func (a *API) getContent(w http.ResponseWriter, r *http.Request) error {
	media.SecurityHeaders(w.Header())
	acc, err := mediaAccess(r)
	if err != nil {
		return err
	}
	c, err := a.media.Download(r.Context(), a.serverName, r.PathValue("mediaId"), acc)
	if err != nil {
		return err
	}
	media.ServeMultipart(w, c)
	return nil
}

// getContentThumbnail is GET /_matrix/federation/v1/media/thumbnail/{mediaId}
// (content_repository.yaml), multipart/mixed like getContent.
func (a *API) getContentThumbnail(w http.ResponseWriter, r *http.Request) error {
	media.SecurityHeaders(w.Header())
	acc, err := mediaAccess(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	req := media.ThumbnailReq{Method: q.Get("method"), Animated: q.Get("animated") == "true"}
	var werr, herr error
	req.Width, werr = strconv.Atoi(q.Get("width"))
	req.Height, herr = strconv.Atoi(q.Get("height"))
	if werr != nil || herr != nil {
		return mxerr.InvalidParam.With("width and height must be integers")
	}
	c, err := a.media.Thumbnail(r.Context(), a.serverName, r.PathValue("mediaId"), req, acc)
	if err != nil {
		return err
	}
	media.ServeMultipart(w, c)
	return nil
}
