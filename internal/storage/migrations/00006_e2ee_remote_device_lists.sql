-- +goose Up
-- The cache of remote users' device lists (internal/e2ee devicelists.go),
-- kept only for users who share a room with a local user and fed by
-- m.device_list_update / m.signing_key_update EDUs and by resyncs through
-- GET /_matrix/federation/v1/user/devices/{userId}.

-- One row per tracked remote user. stream_id is the last device list
-- update applied (the stream_id of an EDU or of a resync); stale = 1 when a
-- gap in the prev_id chain was seen and the list must be fetched again
-- before use; synced_pos is the stream position of the last full resync,
-- which must not predate the current stretch of room sharing. master_key
-- and self_signing_key are the user's cross-signing keys ('' when none).
CREATE TABLE e2ee_remote_device_lists (
    user_id          TEXT PRIMARY KEY,
    stream_id        BIGINT NOT NULL,
    stale            BIGINT NOT NULL DEFAULT 0,
    synced_pos       BIGINT NOT NULL,
    master_key       TEXT NOT NULL DEFAULT '',
    self_signing_key TEXT NOT NULL DEFAULT ''
);

-- The devices of a tracked remote user with their signed device_keys.
CREATE TABLE e2ee_remote_devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    key_json     TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- +goose Down
DROP TABLE e2ee_remote_devices;
DROP TABLE e2ee_remote_device_lists;
