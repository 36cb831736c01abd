-- +goose Up
-- OpenID tokens (internal/users): issued by POST
-- /user/{userId}/openid/request_token, exchanged by other services through
-- GET /_matrix/federation/v1/openid/userinfo. Only the token's SHA-256 is
-- kept, as for access tokens; expired rows are deleted when a new token
-- is issued.
CREATE TABLE openid_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);

-- +goose Down
DROP TABLE openid_tokens;
