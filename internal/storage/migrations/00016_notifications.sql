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
--
-- Keyed by user and room, so that one user's rows of a room are
-- neighbours: a message in a room of a thousand members writes a row per
-- member, each in a different part of the tree, and every further index
-- keyed by user would dirty as many pages again. Marking read scans the
-- user's rows of the room from notification_counts.first_unread on.
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
    PRIMARY KEY (user_id, room_id, stream_pos)
);
-- The janitor forgets old notifications (ts grows with stream_pos: the
-- worker evaluates in stream order, so this index is appended to).
CREATE INDEX notifications_ts ON notifications (ts);

-- notification_counts is the unread count per user, room and thread that
-- /sync reports, kept by the worker (increments) and by receipts
-- (recounted). stream_pos is the position of the last change (the event
-- or receipt that made it), so an incremental sync finds rooms whose
-- counts changed after its token. first_unread is the
-- position of the oldest unread notification counted (0 for none).
CREATE TABLE notification_counts (
    user_id            TEXT NOT NULL,
    room_id            TEXT NOT NULL,
    thread_id          TEXT NOT NULL,
    notification_count BIGINT NOT NULL,
    highlight_count    BIGINT NOT NULL,
    stream_pos         BIGINT NOT NULL,
    first_unread       BIGINT NOT NULL,
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
