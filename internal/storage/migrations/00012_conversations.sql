-- +goose Up
-- Jump to date (timestamp_to_event): the event of a room closest to a
-- time in either direction is one index probe. stream_pos breaks ties
-- between events of the same millisecond without a sort.
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts, stream_pos);
-- Whether an event has children held here (a gap after it, for
-- timestamp_to_event going backwards) is one probe too.
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- Reports of content (spec: "Reporting content"): events, rooms and
-- users reported by local users, for the server's admins. target_user_id
-- is the reported user, or the sender of a reported event; room_id and
-- event_id are empty when they do not apply. score is the legacy -100..0
-- score of event reports (removed from the spec in v1.18), NULL when not
-- given.
CREATE TABLE reports (
    report_id      BIGINT PRIMARY KEY,
    kind           TEXT NOT NULL,
    received_ts    BIGINT NOT NULL,
    reporter       TEXT NOT NULL,
    room_id        TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    reason         TEXT NOT NULL,
    score          BIGINT
);

-- +goose Down
DROP TABLE reports;
DROP INDEX event_edges_prev;
DROP INDEX events_room_ts;
