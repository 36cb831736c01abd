-- +goose Up
-- The user directory (internal/userdir): who can be found by
-- POST /user_directory/search. Kept current in the transactions that
-- change accounts (registration, profile, deactivation) and room state
-- (memberships, join rules, history visibility), never by scanning rooms.
--
-- user_directory holds local accounts (all of them, for search_all_users)
-- and the remote users who are joined to a room this server knows; their
-- profile is the global one for local users, the latest join event's for
-- remote users. sort_key is the normalised display name (or localpart).
CREATE TABLE user_directory (
    user_id      TEXT PRIMARY KEY,
    display_name TEXT,
    avatar_url   TEXT,
    is_local     BIGINT NOT NULL,
    sort_key     TEXT NOT NULL
);

-- user_directory_terms is the search index: one row per word of a user's
-- display name and user ID, lower-cased with accents removed. A search
-- for a prefix is a range scan of the primary key.
CREATE TABLE user_directory_terms (
    term    TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (term, user_id)
);
CREATE INDEX user_directory_terms_user ON user_directory_terms (user_id);

-- user_directory_members are the joined members of every room, local and
-- remote: who shares a room with the searcher, and who is in a public one.
CREATE TABLE user_directory_members (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX user_directory_members_room ON user_directory_members (room_id);

-- user_directory_public_rooms are the rooms whose members anyone may find:
-- join rule public, or history visibility world_readable (as Synapse).
CREATE TABLE user_directory_public_rooms (
    room_id TEXT PRIMARY KEY
);

-- Rooms joined before this migration: their memberships are known from the
-- current state.
INSERT INTO user_directory_members (user_id, room_id)
    SELECT state_key, room_id FROM current_state WHERE type = 'm.room.member' AND membership = 'join';

-- user_directory_backfill marks the one-time indexing still to do at the
-- next start (userdir.Backfill): profiles and terms of the accounts and
-- remote members, and the public rooms, that existed before this
-- migration, which need Go to normalise and to read event content.
CREATE TABLE user_directory_backfill (
    pending BIGINT PRIMARY KEY
);
INSERT INTO user_directory_backfill (pending) VALUES (1);

-- +goose Down
DROP TABLE user_directory_backfill;
DROP TABLE user_directory_public_rooms;
DROP TABLE user_directory_members;
DROP TABLE user_directory_terms;
DROP TABLE user_directory;
