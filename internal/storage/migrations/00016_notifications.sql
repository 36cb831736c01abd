-- +goose Up
-- Push rule evaluation (internal/notifications). A worker follows the
-- events table in stream order from notification_cursor (the events
-- table is the durable queue) and, in one transaction per batch, writes
-- what each local member's push rules say about the events it read.
--
-- notifications holds one row per (user, event) whose rules said
-- "notify" (Synapse's event_push_actions): the actions, whether they
-- highlight, the thread the event belongs to ("main" or a thread root's
-- event ID) and whether a read receipt (or the user's own later event)
-- has covered it. stream_pos is the event's position, unique per user.
CREATE TABLE notifications (
    user_id    TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    room_id    TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    thread_id  TEXT NOT NULL,
    actions    TEXT NOT NULL,
    highlight  BIGINT NOT NULL,
    unread     BIGINT NOT NULL,
    ts         BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_pos)
);
-- Receipts mark a user's notifications of one room read up to a position.
CREATE INDEX notifications_unread ON notifications (user_id, room_id, unread, stream_pos);
-- The janitor forgets old notifications.
CREATE INDEX notifications_ts ON notifications (ts);

-- notification_counts is the unread count per user, room and thread that
-- /sync reports, kept by the worker (increments) and by receipts
-- (recounted). stream_pos is the position of the last change, a
-- position of its own in the events' stream, so an incremental sync
-- finds rooms whose counts changed after its token.
CREATE TABLE notification_counts (
    user_id            TEXT NOT NULL,
    room_id            TEXT NOT NULL,
    thread_id          TEXT NOT NULL,
    notification_count BIGINT NOT NULL,
    highlight_count    BIGINT NOT NULL,
    stream_pos         BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- notification_cursor is the stream position up to which the worker has
-- evaluated events. It starts at the newest event of an existing
-- database: history is not evaluated.
CREATE TABLE notification_cursor (
    id         BIGINT PRIMARY KEY,
    stream_pos BIGINT NOT NULL
);
INSERT INTO notification_cursor (id, stream_pos) SELECT 1, COALESCE(MAX(stream_pos), 0) FROM events;

-- +goose Down
DROP TABLE notification_cursor;
DROP TABLE notification_counts;
DROP TABLE notifications;
