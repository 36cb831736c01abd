-- +goose Up
-- The state event each state event replaced (unsigned.replaces_state and
-- prev_content): the event_nid of the same key in the state before it, 0
-- when the key was unset. Recorded when the event is persisted, so that
-- formatting a state event needs no walk along the snapshot delta chain.
-- NULL for rows written before this migration, and for outliers and
-- backfilled events (which have no state before them); for those the chain
-- is walked as before.
ALTER TABLE events ADD COLUMN replaces_nid BIGINT;

-- +goose Down
ALTER TABLE events DROP COLUMN replaces_nid;
