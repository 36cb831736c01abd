package preview

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"

	// Decoders for reading the dimensions of preview images.
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"

	"golang.org/x/net/html/charset"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/netguard"
)

// build fetches u and makes its preview.
func (s *Service) build(ctx context.Context, u *url.URL, user id.UserID) (map[string]any, error) {
	resp, err := s.get(ctx, u, "text/html,application/xhtml+xml;q=0.9,image/*;q=0.8,*/*;q=0.1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	mediaType, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case strings.HasPrefix(mediaType, "image/"):
		// An image URL is its own preview image.
		og := map[string]any{}
		s.storeImage(ctx, resp, user, og)
		return og, nil
	case mediaType == "text/html" || mediaType == "application/xhtml+xml":
		body := io.LimitReader(resp.Body, s.maxSize)
		r, err := charset.NewReader(body, resp.Header.Get("Content-Type"))
		if err != nil {
			s.log.Debug("URL preview: unknown charset, reading as UTF-8", "charset", params["charset"], "err", err)
			r = body
		}
		og := parseHTML(r, resp.Request.URL)
		resp.Body.Close()
		s.precacheImage(ctx, user, og)
		return og, nil
	}
	return nil, mxerr.Unknown.WithStatus(http.StatusBadGateway).With("Requested file's content type not allowed for this operation: %s", mediaType)
}

// get fetches u through the guard, following redirects, and returns a 2xx
// response or a client-ready error.
func (s *Service) get(ctx context.Context, u *url.URL, accept string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, mxerr.InvalidParam.With("url is not a valid URL")
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Language", "en")
	resp, err := s.client.Do(req)
	if err != nil {
		cancel()
		return nil, s.fetchError(u, err)
	}
	if resp.StatusCode/100 != 2 {
		resp.Body.Close()
		cancel()
		return nil, mxerr.Unknown.WithStatus(http.StatusBadGateway).With("Got error %d", resp.StatusCode)
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// fetchError maps a failed fetch to what Synapse answers: 403 for a
// blocked URL or IP literal, 502 when a name resolved only to refused
// addresses, 502 for other failures.
func (s *Service) fetchError(u *url.URL, err error) error {
	var mx *mxerr.Error
	if errors.As(err, &mx) {
		return mx
	}
	if errors.Is(err, netguard.ErrRefused) {
		host := u.Hostname()
		var ue *url.Error
		if errors.As(err, &ue) {
			if hop, perr := url.Parse(ue.URL); perr == nil {
				host = hop.Hostname()
			}
		}
		if _, perr := netip.ParseAddr(host); perr == nil {
			return mxerr.Unknown.WithStatus(http.StatusForbidden).With("IP address blocked").Wrap(err)
		}
		return mxerr.Unknown.WithStatus(http.StatusBadGateway).With("DNS resolution failure during URL preview generation").Wrap(err)
	}
	switch {
	case errors.Is(err, errTooManyRedirects):
		return mxerr.Unknown.WithStatus(http.StatusBadGateway).With("Too many redirects").Wrap(err)
	case errors.Is(err, context.DeadlineExceeded):
		return mxerr.Unknown.WithStatus(http.StatusGatewayTimeout).With("Timed out fetching the URL").Wrap(err)
	}
	return mxerr.Unknown.WithStatus(http.StatusBadGateway).With("Failed to download content").Wrap(err)
}

// precacheImage replaces og:image, a URL found in the page, with the mxc
// URI of a stored copy, or drops the image keys when it cannot be stored.
func (s *Service) precacheImage(ctx context.Context, user id.UserID, og map[string]any) {
	raw, ok := og["og:image"].(string)
	if !ok {
		return
	}
	dropImage := func() {
		for k := range og {
			if k == "og:image" || strings.HasPrefix(k, "og:image:") {
				delete(og, k)
			}
		}
	}
	if s.uploader == nil {
		dropImage()
		return
	}
	u, err := url.Parse(raw)
	if err == nil {
		err = s.allowed(u)
	}
	if err != nil {
		s.log.Debug("URL preview: image refused", "err", err)
		dropImage()
		return
	}
	resp, err := s.get(ctx, u, "image/*")
	if err != nil {
		s.log.Debug("URL preview: fetching image failed", "err", err)
		dropImage()
		return
	}
	defer resp.Body.Close()
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if !strings.HasPrefix(mediaType, "image/") {
		dropImage()
		return
	}
	delete(og, "og:image")
	if !s.storeImage(ctx, resp, user, og) {
		dropImage()
	}
}

// storeImage uploads the image in resp and records og:image (the mxc
// URI), og:image:type, matrix:image:size and, unless the page gave them,
// the dimensions read from the image header.
func (s *Service) storeImage(ctx context.Context, resp *http.Response, user id.UserID, og map[string]any) bool {
	if s.uploader == nil {
		return false
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	// Keep the head of the stream to read the dimensions from.
	var head bytes.Buffer
	counted := &countingReader{r: io.LimitReader(resp.Body, s.maxSize+1)}
	r := io.TeeReader(counted, &limitedWriter{w: &head, left: 64 << 10})
	uri, err := s.uploader.UploadFromServer(ctx, user, mediaType, fileName(resp.Request.URL), r, s.maxSize)
	if err != nil {
		s.log.Debug("URL preview: storing image failed", "user_id", user, "err", err)
		return false
	}
	og["og:image"] = uri.String()
	og["og:image:type"] = mediaType
	og["matrix:image:size"] = counted.n
	if _, ok := og["og:image:width"]; !ok {
		if cfg, _, err := image.DecodeConfig(bufio.NewReader(&head)); err == nil {
			og["og:image:width"], og["og:image:height"] = cfg.Width, cfg.Height
		}
	}
	return true
}

func fileName(u *url.URL) string {
	name := path.Base(u.Path)
	if name == "/" || name == "." || len(name) > 200 {
		return ""
	}
	return name
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// limitedWriter keeps the first left bytes written and drops the rest.
type limitedWriter struct {
	w    io.Writer
	left int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.left > 0 {
		k := min(len(p), l.left)
		l.left -= k
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, fmt.Errorf("keeping image head: %w", err)
		}
	}
	return len(p), nil
}
