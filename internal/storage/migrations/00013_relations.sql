-- +goose Up
-- event_relations indexes the m.relates_to of every accepted timeline
-- event (spec: client-server API, "Forming relationships between
-- events"), written by internal/relations in the transaction that stores
-- the child. parent_id is not a reference: the parent may arrive later,
-- or never. A redacted child loses its row, since redaction strips
-- m.relates_to; a redacted parent keeps its children. Ordering comes
-- from the child's events row (stream_pos), joined by child_nid.
CREATE TABLE event_relations (
    child_nid  BIGINT PRIMARY KEY,
    child_id   TEXT NOT NULL UNIQUE,
    room_id    TEXT NOT NULL,
    parent_id  TEXT NOT NULL,
    rel_type   TEXT NOT NULL,
    child_type TEXT NOT NULL,
    sender     TEXT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (parent_id, rel_type, child_type);
-- /threads lists a room's thread roots.
CREATE INDEX event_relations_room_type ON event_relations (room_id, rel_type);

-- +goose Down
DROP TABLE event_relations;
