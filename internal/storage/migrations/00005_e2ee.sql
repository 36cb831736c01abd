-- +goose Up
-- End-to-end encryption (internal/e2ee): device keys, one-time and fallback
-- keys, the per-user key change stream, the to-device inbox, cross-signing
-- keys and signatures, and server-side key backup.

-- The signed device_keys object a local device uploaded. Remote users'
-- devices are cached in e2ee_remote_devices (00006).
CREATE TABLE e2ee_device_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unclaimed one-time keys; a claim deletes its row.
CREATE TABLE e2ee_one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- One fallback key per device and algorithm; used is set by its first
-- claim and reset by the next upload.
CREATE TABLE e2ee_fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- The stream position of the last change to a user's devices, device keys
-- or cross-signing keys, which /sync's device_lists.changed and
-- /keys/changes read.
CREATE TABLE e2ee_key_changes (
    user_id    TEXT PRIMARY KEY,
    stream_pos BIGINT NOT NULL
);
CREATE INDEX e2ee_key_changes_stream ON e2ee_key_changes (stream_pos);

-- To-device messages waiting for their device. stream_pos orders them in
-- the shared stream; a /sync whose since token is at or past a message's
-- position acknowledges (deletes) it.
CREATE TABLE e2ee_to_device (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_pos, seq)
);

-- Transaction IDs of /sendToDevice calls already applied.
CREATE TABLE e2ee_to_device_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing.
CREATE TABLE e2ee_cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload, merged into the
-- signed object (a device's keys, or a cross-signing key named by its
-- public key) when it is queried.
CREATE TABLE e2ee_signatures (
    target_user   TEXT NOT NULL,
    target_key    TEXT NOT NULL,
    signer_user   TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature     TEXT NOT NULL,
    PRIMARY KEY (target_user, target_key, signer_user, signer_key_id)
);

-- Key backup versions; deleted versions are kept (deleted = 1) so their
-- numbers are not reused.
CREATE TABLE e2ee_backup_versions (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2ee_backup_keys (
    user_id    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    room_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BIGINT NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

-- The device list stream of local users, for m.device_list_update: the
-- stream_id of each user's last update (the next update's prev_id).
CREATE TABLE e2ee_device_list_streams (
    user_id   TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

-- +goose Down
DROP TABLE e2ee_device_list_streams;
DROP TABLE e2ee_backup_keys;
DROP TABLE e2ee_backup_versions;
DROP TABLE e2ee_signatures;
DROP TABLE e2ee_cross_signing_keys;
DROP TABLE e2ee_to_device_txns;
DROP TABLE e2ee_to_device;
DROP TABLE e2ee_key_changes;
DROP TABLE e2ee_fallback_keys;
DROP TABLE e2ee_one_time_keys;
DROP TABLE e2ee_device_keys;
