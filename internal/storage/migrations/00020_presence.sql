-- +goose Up
-- The latest presence of each user this server tracks (internal/presence),
-- local and remote, so that a restart keeps who is online, their status
-- message and when they were last active. Written only when a user's
-- presence really changes (not on every sync), in batches; the state
-- itself lives in memory.
CREATE TABLE presence (
    user_id            TEXT PRIMARY KEY,
    presence           TEXT NOT NULL,
    status_msg         TEXT,
    last_active_ts     BIGINT NOT NULL,
    last_federation_ts BIGINT NOT NULL,
    currently_active   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE presence;
