-- +goose Up
-- Pushers (internal/pushers; spec "Push notifications"): where a user's
-- notifications are sent. One per (user, app_id, pushkey); device_id is
-- the device whose access token set it, so deleting or logging out that
-- device removes it. data is the pusher's data object as JSON (with url);
-- pushkey_ts (ms) is when it was last set; failing_since (ms, 0: not
-- failing) is when deliveries to it started failing, so that a gateway
-- down for a day does not get a day of old notifications once it is back.
CREATE TABLE pushers (
    pusher_id           BIGINT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT NOT NULL,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    pushkey_ts          BIGINT NOT NULL,
    failing_since       BIGINT NOT NULL DEFAULT 0,
    UNIQUE (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);
CREATE INDEX pushers_device ON pushers (user_id, device_id);

-- The durable delivery queue: one row per notification per pusher, written
-- in the transaction that records the notification (push.Sink) and
-- deleted once the gateway has answered 200 (or delivery gave up).
-- Each pusher's queue is sent in the order of the events' stream
-- positions (stream_pos), then of queue_id, whatever order the producer
-- handed them over in. notification is what the gateway request is built
-- from: the event in client format, the tweaks, the highlight flag and
-- the unread count.
CREATE TABLE pusher_queue (
    queue_id     BIGINT PRIMARY KEY,
    pusher_id    BIGINT NOT NULL,
    stream_pos   BIGINT NOT NULL,
    event_id     TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    notification TEXT NOT NULL,
    created_ts   BIGINT NOT NULL
);
CREATE INDEX pusher_queue_pusher ON pusher_queue (pusher_id, stream_pos, queue_id);

-- +goose Down
DROP TABLE pusher_queue;
DROP TABLE pushers;
