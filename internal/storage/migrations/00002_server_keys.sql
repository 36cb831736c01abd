-- +goose Up
-- Verify keys of federation servers, ours included. One row per key ID.
-- expired_ts is 0 for a key the server still lists in verify_keys, and the
-- moment it stopped using the key once it moved to old_verify_keys.
-- valid_until_ts is the response's valid_until_ts as served; readers cap it
-- at fetched_ts + 7 days, as the spec requires. response is the signed key
-- response the row came from (NULL for our own keys), kept so that the
-- notary endpoint can serve it again.
CREATE TABLE server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    verify_key     TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts     BIGINT NOT NULL DEFAULT 0,
    fetched_ts     BIGINT NOT NULL,
    response       TEXT,
    PRIMARY KEY (server_name, key_id)
);

-- +goose Down
DROP TABLE server_keys;
