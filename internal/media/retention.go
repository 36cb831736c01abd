package media

import (
	"context"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"
)

// The admin API and the janitor remove media through these methods.
// Rows go first; a blob (with its thumbnails) goes once no row names it.

// Quarantine hides media from everyone (404), keeping its bytes for an
// administrator to inspect; on (false) lifts it.
func (s *Service) Quarantine(ctx context.Context, uri id.ContentURI, on bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE media SET quarantined = $1 WHERE server_name = $2 AND media_id = $3`,
		boolInt(on), uri.Homeserver, uri.FileID)
	if err != nil {
		return fmt.Errorf("quarantining %s: %w", uri, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("quarantining %s: %w", uri, ErrUnknownMedia)
	}
	return nil
}

// ErrUnknownMedia is returned (wrapped) for an mxc URI this server does
// not hold.
var ErrUnknownMedia = fmt.Errorf("unknown media")

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Delete removes one item (local or cached remote).
func (s *Service) Delete(ctx context.Context, uri id.ContentURI) error {
	n, err := s.deleteWhere(ctx, `server_name = $1 AND media_id = $2`, uri.Homeserver, uri.FileID)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("deleting %s: %w", uri, ErrUnknownMedia)
	}
	return nil
}

// DeleteByUser removes everything user uploaded and returns the count.
func (s *Service) DeleteByUser(ctx context.Context, user id.UserID) (int, error) {
	return s.deleteWhere(ctx, `server_name = $1 AND user_id = $2`, s.serverName, user.String())
}

// DeleteLocalBefore removes local media created before t that is larger
// than minSize bytes (Synapse's delete-by-date-and-size), skipping
// quarantined media, and returns the count.
func (s *Service) DeleteLocalBefore(ctx context.Context, t time.Time, minSize int64) (int, error) {
	return s.deleteWhere(ctx, `server_name = $1 AND created_ts < $2 AND size > $3 AND quarantined = 0 AND pending_until = 0`,
		s.serverName, nowMS(t), minSize)
}

// Retain applies media_retention: local media not accessed for
// local_media_lifetime and cached remote media not accessed for
// remote_media_lifetime are deleted, with created IDs left unused past
// their expiry. It returns how many items went; the janitor calls it.
func (s *Service) Retain(ctx context.Context) (int, error) {
	now := s.now()
	total := 0
	n, err := s.deleteWhere(ctx, `server_name = $1 AND pending_until > 0 AND pending_until <= $2`, s.serverName, nowMS(now))
	total += n
	if err != nil {
		return total, err
	}
	// Wake every waiter of a pending upload: each reads its row again and
	// registers anew if still pending, so the channels of IDs that expired
	// or were abandoned do not pile up.
	s.mu.Lock()
	for _, ch := range s.uploaded {
		close(ch)
	}
	clear(s.uploaded)
	s.mu.Unlock()
	if l := time.Duration(s.cfg.MediaRetention.RemoteMediaLifetime); l > 0 {
		n, err := s.PurgeRemoteBefore(ctx, now.Add(-l))
		total += n
		if err != nil {
			return total, err
		}
	}
	if l := time.Duration(s.cfg.MediaRetention.LocalMediaLifetime); l > 0 {
		n, err := s.deleteWhere(ctx, `server_name = $1 AND last_access_ts < $2 AND pending_until = 0 AND quarantined = 0`,
			s.serverName, nowMS(now.Add(-l)))
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// PurgeRemoteBefore drops cached remote media last accessed before t
// (Synapse's purge_media_cache); it is fetched again when next asked for.
func (s *Service) PurgeRemoteBefore(ctx context.Context, t time.Time) (int, error) {
	return s.deleteWhere(ctx, `server_name <> $1 AND last_access_ts < $2`, s.serverName, nowMS(t))
}

// deleteWhere deletes the rows matching cond and collects their blobs.
func (s *Service) deleteWhere(ctx context.Context, cond string, args ...any) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT server_name, media_id, sha256 FROM media WHERE `+cond, args...)
	if err != nil {
		return 0, fmt.Errorf("listing media to delete: %w", err)
	}
	type victim struct{ server, mediaID, sha string }
	var victims []victim
	for rows.Next() {
		var v victim
		if err := rows.Scan(&v.server, &v.mediaID, &v.sha); err != nil {
			rows.Close()
			return 0, fmt.Errorf("listing media to delete: %w", err)
		}
		victims = append(victims, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("listing media to delete: %w", err)
	}
	for i, v := range victims {
		if err := s.deleteOne(ctx, v.server, v.mediaID, v.sha); err != nil {
			return i, err
		}
	}
	return len(victims), nil
}

func (s *Service) deleteOne(ctx context.Context, server, mediaID, sha string) error {
	if sha == "" {
		_, err := s.db.ExecContext(ctx, `DELETE FROM media WHERE server_name = $1 AND media_id = $2`, server, mediaID)
		return err
	}
	l := s.blobLock(sha)
	l.Lock()
	defer l.Unlock()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM media WHERE server_name = $1 AND media_id = $2`, server, mediaID); err != nil {
		return fmt.Errorf("deleting media %s/%s: %w", server, mediaID, err)
	}
	return s.collectLocked(ctx, sha)
}

// collect deletes the blob sha (and its thumbnails) if no row names it.
func (s *Service) collect(ctx context.Context, sha string) {
	l := s.blobLock(sha)
	l.Lock()
	defer l.Unlock()
	if err := s.collectLocked(ctx, sha); err != nil {
		s.log.Warn("collecting an unused media blob failed", "sha256", sha, "err", err)
	}
}

func (s *Service) collectLocked(ctx context.Context, sha string) error {
	var refs int64
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM media WHERE sha256 = $1`, sha).Scan(&refs); err != nil {
		return fmt.Errorf("counting the users of blob %s: %w", sha, err)
	}
	if refs > 0 {
		return nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT blob_key FROM media_thumbnails WHERE sha256 = $1`, sha)
	if err != nil {
		return fmt.Errorf("listing the thumbnails of %s: %w", sha, err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err == nil {
			keys = append(keys, k)
		}
	}
	rows.Close()
	if _, err := s.db.ExecContext(ctx, `DELETE FROM media_thumbnails WHERE sha256 = $1`, sha); err != nil {
		return fmt.Errorf("deleting the thumbnails of %s: %w", sha, err)
	}
	for _, k := range append(keys, sha) {
		if err := s.blobs.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}
