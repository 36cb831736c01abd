package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/media/thumbnail"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// ThumbnailReq is a thumbnail request's parameters.
type ThumbnailReq struct {
	Width, Height int
	// Method is crop or scale (default scale).
	Method string
	// Animated asks for an animated thumbnail: an animated original is
	// then served as is.
	Animated bool
}

// headBytes is how much of an original is read to probe its header.
const headBytes = 256 << 10

// Thumbnail returns a thumbnail of an mxc URI: the configured size
// nearest the request (chosen as Synapse does), generated on first
// request from the content and cached as a blob; the original itself
// when it is no larger than that, or when animated is asked for and the
// original is animated.
func (s *Service) Thumbnail(ctx context.Context, server, mediaID string, req ThumbnailReq, acc Access) (*Content, error) {
	if req.Width <= 0 || req.Height <= 0 {
		return nil, mxerr.InvalidParam.With("width and height must be positive integers")
	}
	if req.Method == "" {
		req.Method = "scale"
	}
	if req.Method != "crop" && req.Method != "scale" {
		return nil, mxerr.InvalidParam.With("method must be crop or scale")
	}
	it, err := s.lookup(ctx, server, mediaID, acc)
	if err != nil {
		return nil, err
	}
	info, err := s.probe(ctx, it)
	if err != nil {
		return nil, err
	}
	if int64(info.Width)*int64(info.Height) > int64(s.cfg.MaxImagePixels) {
		e := mxerr.TooLarge.With("image too large to thumbnail")
		if it.Server != s.serverName {
			e = e.WithStatus(http.StatusBadGateway)
		}
		return nil, e
	}
	if req.Animated && (info.Format == "gif" || info.Format == "png" || info.Format == "webp") {
		if body, _, err := s.blobs.Open(ctx, it.SHA256); err == nil {
			animated := thumbnail.Animated(body, info.Format)
			body.Close()
			if animated {
				return s.original(ctx, it, info)
			}
		}
	}
	spec, ok := s.selectThumbnail(info, req)
	if !ok {
		return s.original(ctx, it, info)
	}
	row, err := s.thumbnailRow(ctx, it.SHA256, spec.Width, spec.Height, spec.Method)
	if err != nil {
		return nil, err
	}
	if row == nil {
		key := fmt.Sprintf("%s-%dx%d-%s", it.SHA256, spec.Width, spec.Height, spec.Method)
		if err := s.once(ctx, s.thumbs, key, func(ctx context.Context) error { return s.generate(ctx, it, info, spec, key) }); err != nil {
			return nil, err
		}
		if row, err = s.thumbnailRow(ctx, it.SHA256, spec.Width, spec.Height, spec.Method); err != nil || row == nil {
			return nil, errors.Join(err, fmt.Errorf("thumbnail %s vanished", key))
		}
	}
	body, size, err := s.blobs.Open(ctx, row.blobKey)
	if err != nil {
		return nil, err
	}
	s.touch(ctx, it)
	c := &Content{Item: *it, Body: body}
	c.Size, c.ContentType, c.FileName = size, row.contentType, "thumbnail"+extension(row.contentType)
	return c, nil
}

// original serves the original image as its own thumbnail.
func (s *Service) original(ctx context.Context, it *Item, info thumbnail.Info) (*Content, error) {
	body, size, err := s.blobs.Open(ctx, it.SHA256)
	if err != nil {
		return nil, err
	}
	s.touch(ctx, it)
	c := &Content{Item: *it, Body: body}
	c.Size, c.ContentType = size, "image/"+info.Format
	c.FileName = "thumbnail" + extension(c.ContentType)
	return c, nil
}

func extension(contentType string) string {
	switch contentType {
	case "image/jpeg":
		return ".jpg"
	case "image/png":
		return ".png"
	case "image/gif":
		return ".gif"
	case "image/webp":
		return ".webp"
	}
	return ""
}

// probe reads the header of an item's content.
func (s *Service) probe(ctx context.Context, it *Item) (thumbnail.Info, error) {
	if !strings.HasPrefix(baseType(it.ContentType), "image/") {
		return thumbnail.Info{}, cannotThumbnail()
	}
	body, _, err := s.blobs.Open(ctx, it.SHA256)
	if err != nil {
		return thumbnail.Info{}, err
	}
	defer body.Close()
	head, err := io.ReadAll(io.LimitReader(body, headBytes))
	if err != nil {
		return thumbnail.Info{}, fmt.Errorf("reading media %s: %w", it.MediaID, err)
	}
	info, err := thumbnail.Probe(head)
	if err != nil {
		return thumbnail.Info{}, cannotThumbnail()
	}
	return info, nil
}

func cannotThumbnail() error {
	return mxerr.Unknown.With("cannot generate thumbnails for the requested content").WithStatus(http.StatusBadRequest)
}

// selectThumbnail picks the configured size for the request the way
// Synapse picks among its thumbnails: for crop, the crop thumbnail at
// least as large as asked, then closest in aspect and size; for scale
// (or when no crop size exists), the one closest in size among those
// reaching the asked width or height. ok is false when the pick would be
// no smaller than the original.
func (s *Service) selectThumbnail(info thumbnail.Info, req ThumbnailReq) (config.ThumbnailSize, bool) {
	dw, dh := req.Width, req.Height
	type cand struct {
		spec   config.ThumbnailSize
		w, h   int
		scores [3]int64
	}
	less := func(a, b [3]int64) bool {
		for i := range a {
			if a[i] != b[i] {
				return a[i] < b[i]
			}
		}
		return false
	}
	var best *cand
	pick := func(c cand) {
		if best == nil || less(c.scores, best.scores) {
			best = &c
		}
	}
	abs := func(v int64) int64 { return max(v, -v) }
	if req.Method == "crop" {
		for _, t := range s.cfg.ThumbnailSizes {
			if t.Method != "crop" {
				continue
			}
			w, h := thumbnail.Fit(info.Width, info.Height, t.Width, t.Height, t.Method)
			small := int64(0)
			if w < dw || h < dh {
				small = 1
			}
			aspect := abs(int64(dw*h - dh*w))
			size := abs(int64((dw - w) * (dh - h)))
			pick(cand{t, w, h, [3]int64{small, aspect, size}})
		}
	}
	if best == nil {
		for _, t := range s.cfg.ThumbnailSizes {
			if t.Method != "scale" {
				continue
			}
			w, h := thumbnail.Fit(info.Width, info.Height, t.Width, t.Height, t.Method)
			small := int64(1)
			if w >= dw || h >= dh {
				small = 0
			}
			pick(cand{t, w, h, [3]int64{small, abs(int64((dw - w) * (dh - h))), 0}})
		}
	}
	if best == nil || (best.w >= info.Width && best.h >= info.Height) {
		return config.ThumbnailSize{}, false
	}
	return best.spec, true
}

// generate makes one thumbnail and records it.
func (s *Service) generate(ctx context.Context, it *Item, info thumbnail.Info, spec config.ThumbnailSize, key string) error {
	select {
	case s.thumbSlots <- struct{}{}:
		defer func() { <-s.thumbSlots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	body, _, err := s.blobs.Open(ctx, it.SHA256)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(body, int64(s.cfg.MaxUploadSize)+1))
	body.Close()
	if err != nil {
		return fmt.Errorf("reading media %s to thumbnail: %w", it.MediaID, err)
	}
	out, _, _, err := thumbnail.Make(data, info, spec.Width, spec.Height, spec.Method)
	if err != nil {
		s.log.Debug("thumbnailing failed", "media_id", it.MediaID, "err", err)
		return cannotThumbnail()
	}
	if err := s.blobs.Put(ctx, key, bytes.NewReader(out), int64(len(out))); err != nil {
		return err
	}
	return s.insertThumbnail(ctx, it.SHA256, &thumbnailRow{
		width: spec.Width, height: spec.Height, method: spec.Method,
		contentType: thumbnail.ContentType(info.Format), size: int64(len(out)), blobKey: key,
	})
}
