-- +goose Up
-- Jump to date (timestamp_to_event): the event of a room closest to a
-- time in either direction is one index probe. stream_pos breaks ties
-- between events of the same millisecond without a sort.
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts, stream_pos);
-- Whether an event has children held here (a gap after it, for
-- timestamp_to_event going backwards) is one probe too.
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- +goose Down
DROP INDEX event_edges_prev;
DROP INDEX events_room_ts;
