-- +goose Up
-- The state event each state event replaced (unsigned.replaces_state and
-- prev_content): the event_nid of the same key in the state before it, 0
-- when the key was unset. Recorded when the event is persisted, so that
-- formatting a state event needs no walk along the snapshot delta chain.
-- NULL for rows written before this migration, and for outliers and
-- backfilled events (which have no state before them); for those the chain
-- is walked as before.
ALTER TABLE events ADD COLUMN replaces_nid BIGINT;

-- Room summaries (member counts by membership, and heroes) read a room's
-- members through this index alone, without a table lookup per member.
CREATE INDEX current_state_room_membership ON current_state (room_id, type, membership, state_key);

-- +goose Down
DROP INDEX current_state_room_membership;
ALTER TABLE events DROP COLUMN replaces_nid;
