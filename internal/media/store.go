package media

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// Item is the metadata of one mxc URI (a row of the media table).
type Item struct {
	Server, MediaID string
	// UserID uploaded it; empty for remote media.
	UserID      id.UserID
	ContentType string
	FileName    string
	Size        int64
	// SHA256 is the hex digest of the bytes and their blob key; empty
	// while an asynchronous upload is pending.
	SHA256       string
	CreatedTS    int64
	LastAccessTS int64
	Quarantined  bool
	// PendingUntil is the expiry (ms) of a created, not yet uploaded ID.
	PendingUntil int64
	// Authenticated marks media stored while enable_authenticated_media
	// was on: the legacy endpoints do not serve it.
	Authenticated bool
}

// URI is the item's mxc URI.
func (it *Item) URI() id.ContentURI { return uriOf(it.Server, it.MediaID) }

const itemColumns = `server_name, media_id, user_id, content_type, file_name, size, sha256, created_ts,
	last_access_ts, quarantined, pending_until, authenticated`

func scanItem(row interface{ Scan(...any) error }) (*Item, error) {
	var it Item
	var user string
	var quarantined, authenticated int64
	if err := row.Scan(&it.Server, &it.MediaID, &user, &it.ContentType, &it.FileName, &it.Size, &it.SHA256,
		&it.CreatedTS, &it.LastAccessTS, &quarantined, &it.PendingUntil, &authenticated); err != nil {
		return nil, err
	}
	it.UserID, it.Quarantined, it.Authenticated = id.UserID(user), quarantined != 0, authenticated != 0
	return &it, nil
}

// item loads one row; nil when there is none.
func (s *Service) item(ctx context.Context, server, mediaID string) (*Item, error) {
	it, err := scanItem(s.db.QueryRowContext(ctx, `SELECT `+itemColumns+` FROM media WHERE server_name = $1 AND media_id = $2`,
		server, mediaID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading media %s/%s: %w", server, mediaID, err)
	}
	return it, nil
}

// Get returns the metadata of an mxc URI this server holds (local, or
// remote and cached), or nil.
func (s *Service) Get(ctx context.Context, server, mediaID string) (*Item, error) {
	return s.item(ctx, server, mediaID)
}

func (s *Service) insertItem(ctx context.Context, q storage.Querier, it *Item) error {
	_, err := q.ExecContext(ctx, `INSERT INTO media (`+itemColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		it.Server, it.MediaID, it.UserID.String(), it.ContentType, it.FileName, it.Size, it.SHA256, it.CreatedTS,
		it.LastAccessTS, storage.Bool(it.Quarantined), it.PendingUntil, storage.Bool(it.Authenticated))
	if err != nil {
		return fmt.Errorf("recording media %s/%s: %w", it.Server, it.MediaID, err)
	}
	return nil
}

// touch records an access for retention, at most once a minute per item
// so that a popular avatar does not write on every download.
func (s *Service) touch(ctx context.Context, it *Item) {
	now := nowMS(s.now())
	if now-it.LastAccessTS < 60_000 {
		return
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE media SET last_access_ts = $1 WHERE server_name = $2 AND media_id = $3`,
		now, it.Server, it.MediaID); err != nil {
		s.log.Warn("recording a media access failed", "server", it.Server, "media_id", it.MediaID, "err", err)
	}
}

// userUsage is the bytes a user has uploaded, and their pending IDs.
func (s *Service) userUsage(ctx context.Context, user id.UserID) (bytes, pending int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0),
		COALESCE(SUM(CASE WHEN pending_until > $2 THEN 1 ELSE 0 END), 0)
		FROM media WHERE user_id = $1 AND server_name = $3`, user.String(), nowMS(s.now()), s.serverName).Scan(&bytes, &pending)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the media usage of %s: %w", user, err)
	}
	return bytes, pending, nil
}

// thumbnailRow is a generated thumbnail of a blob.
type thumbnailRow struct {
	width, height int
	method        string
	contentType   string
	size          int64
	blobKey       string
}

func (s *Service) thumbnailRow(ctx context.Context, sha string, w, h int, method string) (*thumbnailRow, error) {
	t := thumbnailRow{width: w, height: h, method: method}
	err := s.db.QueryRowContext(ctx, `SELECT content_type, size, blob_key FROM media_thumbnails
		WHERE sha256 = $1 AND width = $2 AND height = $3 AND method = $4`, sha, w, h, method).Scan(&t.contentType, &t.size, &t.blobKey)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading a thumbnail of %s: %w", sha, err)
	}
	return &t, nil
}

func (s *Service) insertThumbnail(ctx context.Context, sha string, t *thumbnailRow) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO media_thumbnails (sha256, width, height, method, content_type, size, blob_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`, sha, t.width, t.height, t.method, t.contentType, t.size, t.blobKey)
	if err != nil {
		return fmt.Errorf("recording a thumbnail of %s: %w", sha, err)
	}
	return nil
}
