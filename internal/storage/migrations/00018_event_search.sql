-- +goose Up
-- event_search is the full-text index of server-side search (spec:
-- client-server API, "Server Side Search"), written by internal/search in
-- the transaction that stores each accepted timeline event: content.body
-- of m.room.message, content.name of m.room.name, content.topic (and the
-- text/plain m.topic) of m.room.topic. Its key is the event's event_nid,
-- which also orders matches newest first; field is the spec's key the
-- text came from; room_id lets a search keep the matches in the user's
-- rooms without reading each one's events row. A redacted event loses
-- its row. Each engine keeps the index in its own full-text facility (see
-- storage.FullText).
-- +myelin dialect sqlite
CREATE VIRTUAL TABLE event_search USING fts5(
    document,
    room_id UNINDEXED,
    field UNINDEXED,
    content = '',
    contentless_delete = 1,
    contentless_unindexed = 1,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
-- Events stored before this migration.
INSERT INTO event_search (rowid, document, room_id, field)
SELECT event_nid, json_extract(json, '$.content.body'), room_id, 'content.body' FROM events
WHERE type = 'm.room.message' AND state_key IS NULL AND outlier = 0 AND rejected = 0 AND soft_failed = 0
    AND redacted_by IS NULL AND json_type(json, '$.content.body') = 'text';
INSERT INTO event_search (rowid, document, room_id, field)
SELECT event_nid, json_extract(json, '$.content.name'), room_id, 'content.name' FROM events
WHERE type = 'm.room.name' AND state_key = '' AND outlier = 0 AND rejected = 0 AND soft_failed = 0
    AND redacted_by IS NULL AND json_type(json, '$.content.name') = 'text';
INSERT INTO event_search (rowid, document, room_id, field)
SELECT event_nid, json_extract(json, '$.content.topic'), room_id, 'content.topic' FROM events
WHERE type = 'm.room.topic' AND state_key = '' AND outlier = 0 AND rejected = 0 AND soft_failed = 0
    AND redacted_by IS NULL AND json_type(json, '$.content.topic') = 'text';
-- +myelin dialect postgres
CREATE TABLE event_search (
    event_nid BIGINT PRIMARY KEY,
    room_id   TEXT NOT NULL,
    field     TEXT NOT NULL,
    vector    TSVECTOR NOT NULL
);
-- Events stored before this migration. jsonb refuses \u0000, which no
-- indexed text may hold anyway.
INSERT INTO event_search (event_nid, vector, room_id, field)
SELECT event_nid, to_tsvector('english', (json::jsonb) -> 'content' ->> 'body'), room_id, 'content.body' FROM events
WHERE type = 'm.room.message' AND state_key IS NULL AND outlier = 0 AND rejected = 0 AND soft_failed = 0
    AND redacted_by IS NULL AND strpos(json, '\u0000') = 0
    AND jsonb_typeof((json::jsonb) -> 'content' -> 'body') = 'string';
INSERT INTO event_search (event_nid, vector, room_id, field)
SELECT event_nid, to_tsvector('english', (json::jsonb) -> 'content' ->> 'name'), room_id, 'content.name' FROM events
WHERE type = 'm.room.name' AND state_key = '' AND outlier = 0 AND rejected = 0 AND soft_failed = 0
    AND redacted_by IS NULL AND strpos(json, '\u0000') = 0
    AND jsonb_typeof((json::jsonb) -> 'content' -> 'name') = 'string';
INSERT INTO event_search (event_nid, vector, room_id, field)
SELECT event_nid, to_tsvector('english', (json::jsonb) -> 'content' ->> 'topic'), room_id, 'content.topic' FROM events
WHERE type = 'm.room.topic' AND state_key = '' AND outlier = 0 AND rejected = 0 AND soft_failed = 0
    AND redacted_by IS NULL AND strpos(json, '\u0000') = 0
    AND jsonb_typeof((json::jsonb) -> 'content' -> 'topic') = 'string';
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
-- +myelin dialect end

-- +goose Down
DROP TABLE event_search;
