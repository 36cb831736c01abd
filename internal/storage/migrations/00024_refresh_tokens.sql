-- +goose Up
-- Refresh tokens and expiring access tokens (spec v1.3 /refresh), and
-- the one-time login tokens of POST /login/get_token (internal/users/
-- sessions.go). Tokens are kept as SHA-256 hashes, as access tokens are.
-- An access token's expires_ts is NULL when it never expires;
-- refresh_hash is the refresh token issued with it.
ALTER TABLE access_tokens ADD COLUMN expires_ts BIGINT;
ALTER TABLE access_tokens ADD COLUMN refresh_hash TEXT;
-- prev_hash is the refresh token this one replaced: it stays usable until
-- this one or its access token is first used, then it is deleted.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    expires_ts BIGINT,
    prev_hash  TEXT
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);
CREATE INDEX refresh_tokens_prev ON refresh_tokens (prev_hash);
CREATE TABLE login_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);

-- +goose Down
DROP TABLE login_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE access_tokens DROP COLUMN refresh_hash;
ALTER TABLE access_tokens DROP COLUMN expires_ts;
