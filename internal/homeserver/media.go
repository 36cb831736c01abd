package homeserver

import (
	"context"
	"path/filepath"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/media/diskstore"
)

// newMedia builds the content repository on local disk under
// media_store_path (default <data dir>/media_store).
func (s *Server) newMedia(fed *fedclient.Client) (*media.Service, error) {
	dir := s.cfg.Media.MediaStorePath
	if dir == "" {
		dir = filepath.Join(s.cfg.DataDir, "media_store")
	}
	blobs, err := diskstore.New(dir)
	if err != nil {
		return nil, err
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
