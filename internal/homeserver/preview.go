package homeserver

import (
	"log/slog"

	"github.com/myelin-chat/myelin/internal/clientapi"
	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/preview"
)

// previewOption builds the URL preview service when url_preview_enabled is
// on. up stores preview images; nil leaves og:image out of previews. Pass
// a literal nil, not a nil *media.Service, which would be a non-nil
// interface.
func previewOption(cfg config.URLPreview, up preview.Uploader, log *slog.Logger) ([]clientapi.Option, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	p, err := preview.New(cfg, up, log)
	if err != nil {
		return nil, err
	}
	return []clientapi.Option{clientapi.WithPreview(p)}, nil
}
