package homeserver

import (
	"context"
	"path/filepath"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/media/diskstore"
	"github.com/myelin-chat/myelin/internal/media/s3store"
)

// newMedia builds the content repository, its bytes in the S3 bucket of
// media_storage or on local disk under media_store_path (default
// <data dir>/media_store).
func (s *Server) newMedia(ctx context.Context, fed *fedclient.Client) (*media.Service, error) {
	var blobs media.Blobs
	if s.cfg.MediaStorage.Backend == "s3" {
		store, err := s3store.New(ctx, s.cfg.MediaStorage.S3, s.log)
		if err != nil {
			return nil, err
		}
		blobs = store
	} else {
		dir := s.cfg.Media.MediaStorePath
		if dir == "" {
			dir = filepath.Join(s.cfg.DataDir, "media_store")
		}
		store, err := diskstore.New(dir)
		if err != nil {
			return nil, err
		}
		blobs = store
	}
	return media.New(s.db, blobs, s.cfg.ServerName, s.cfg.Media, s.log, media.WithFederation(fed)), nil
}

// retainMedia is the janitor's media pass: expired media IDs and media
// past media_retention go.
func (s *Server) retainMedia(ctx context.Context) {
	if n, err := s.Media.Retain(ctx); err != nil {
		s.log.Warn("janitor: media retention", "err", err)
	} else if n > 0 {
		s.log.Info("janitor: deleted media", "count", n)
	}
}
