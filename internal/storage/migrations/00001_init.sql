-- +goose Up
-- Every statement here is accepted by SQLite and PostgreSQL alike.
-- Booleans are stored as BIGINT 0/1; JSON as TEXT.

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE accounts (
    user_id       TEXT PRIMARY KEY,
    localpart     TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',
    is_admin      BIGINT NOT NULL DEFAULT 0,
    deactivated   BIGINT NOT NULL DEFAULT 0,
    displayname   TEXT,
    avatar_url    TEXT,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens are stored as SHA-256 hashes, never in the clear.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    completed    BIGINT NOT NULL DEFAULT 0,
    expiry_time  BIGINT
);

CREATE TABLE filters (
    user_id     TEXT NOT NULL,
    filter_id   BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- room_id is '' for global account data.
CREATE TABLE account_data (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    content    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_pos);

CREATE TABLE transaction_ids (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    -- the state snapshot after the newest forward extremities
    current_snapshot BIGINT NOT NULL DEFAULT 0,
    is_public    BIGINT NOT NULL DEFAULT 0,
    created_ts   BIGINT NOT NULL
);

-- events holds every PDU we store, in the JSON form of its room version.
-- event_nid is a compact numeric ID used by state snapshots. stream_pos
-- orders events for /sync and /messages (positive, increasing as persisted).
-- snapshot_nid is the state before the event.
CREATE TABLE events (
    event_nid        BIGINT PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    type             TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    depth            BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    stream_pos       BIGINT NOT NULL,
    snapshot_nid     BIGINT NOT NULL,
    rejected         BIGINT NOT NULL DEFAULT 0,
    soft_failed      BIGINT NOT NULL DEFAULT 0,
    redacted_by      TEXT,
    txn_device       TEXT,
    txn_id           TEXT,
    json             TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_id, stream_pos);
CREATE UNIQUE INDEX events_stream ON events (stream_pos);

CREATE TABLE event_edges (
    event_nid     BIGINT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_nid, prev_event_id)
);

CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State snapshots are stored as deltas against a parent snapshot, with a
-- full copy written when a delta chain gets long. A snapshot is shared by
-- every event that sees the same state, so messages add no state rows.
CREATE TABLE state_snapshots (
    snapshot_nid BIGINT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    parent_nid   BIGINT NOT NULL DEFAULT 0,
    chain_len    BIGINT NOT NULL DEFAULT 0
);

-- event_nid 0 marks a key removed relative to the parent.
CREATE TABLE state_snapshot_entries (
    snapshot_nid BIGINT NOT NULL,
    type         TEXT NOT NULL,
    state_key    TEXT NOT NULL,
    event_nid    BIGINT NOT NULL,
    PRIMARY KEY (snapshot_nid, type, state_key)
);

CREATE TABLE current_state (
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_nid  BIGINT NOT NULL,
    event_id   TEXT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_member ON current_state (state_key, type, membership);

-- The membership of local users, with the stream position of its last change,
-- which incremental /sync reads to place rooms under join, invite and leave.
CREATE TABLE local_memberships (
    user_id    TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    forgotten  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX local_memberships_stream ON local_memberships (user_id, stream_pos);

CREATE TABLE room_aliases (
    alias      TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    creator    TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    stream_pos   BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (room_id, stream_pos);

-- +goose Down
DROP TABLE receipts;
DROP TABLE room_aliases;
DROP TABLE local_memberships;
DROP TABLE current_state;
DROP TABLE state_snapshot_entries;
DROP TABLE state_snapshots;
DROP TABLE forward_extremities;
DROP TABLE event_edges;
DROP TABLE events;
DROP TABLE rooms;
DROP TABLE transaction_ids;
DROP TABLE account_data;
DROP TABLE filters;
DROP TABLE registration_tokens;
DROP TABLE access_tokens;
DROP TABLE devices;
DROP TABLE accounts;
DROP TABLE counters;
