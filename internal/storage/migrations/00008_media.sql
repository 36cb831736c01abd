-- +goose Up
-- The content repository (internal/media): one row per mxc:// URI this
-- server knows, local uploads and cached remote media alike. The bytes
-- live in a Blobs store (disk or S3) under the hex SHA-256 of the content,
-- so identical uploads share one blob; a blob is deleted when the last row
-- naming it goes.
--
-- user_id is the uploader ('' for remote media). sha256 is '' while an
-- asynchronous upload (POST /_matrix/media/v1/create) waits for its bytes;
-- pending_until is then the millisecond deadline after which the unused ID
-- expires, and 0 once uploaded. authenticated = 1 marks media stored while
-- enable_authenticated_media was on: the legacy unauthenticated endpoints
-- answer 404 for it (Synapse's freeze). A quarantined row answers 404 to
-- everyone. last_access_ts drives the retention of cached remote media.
CREATE TABLE media (
    server_name    TEXT NOT NULL,
    media_id       TEXT NOT NULL,
    user_id        TEXT NOT NULL DEFAULT '',
    content_type   TEXT NOT NULL DEFAULT '',
    file_name      TEXT NOT NULL DEFAULT '',
    size           BIGINT NOT NULL DEFAULT 0,
    sha256         TEXT NOT NULL DEFAULT '',
    created_ts     BIGINT NOT NULL,
    last_access_ts BIGINT NOT NULL,
    quarantined    BIGINT NOT NULL DEFAULT 0,
    pending_until  BIGINT NOT NULL DEFAULT 0,
    authenticated  BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (server_name, media_id)
);
CREATE INDEX media_user ON media (user_id, created_ts);
CREATE INDEX media_sha256 ON media (sha256);
CREATE INDEX media_access ON media (server_name, last_access_ts);

-- Thumbnails, generated on first request from the content with that
-- SHA-256 (so media sharing a blob share thumbnails), one per configured
-- size and method. blob_key names the thumbnail's bytes in the Blobs store.
CREATE TABLE media_thumbnails (
    sha256       TEXT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    method       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    blob_key     TEXT NOT NULL,
    PRIMARY KEY (sha256, width, height, method)
);

-- +goose Down
DROP TABLE media_thumbnails;
DROP TABLE media;
