-- +goose Up
-- Sliding sync (MSC4186) orders a user's rooms by recency: the stream
-- position of each room's newest "bump" event (a message, an encrypted
-- event, a sticker, a call invite, a poll or live location start, or the
-- creation), as Synapse defines them. One row per room, written by
-- slidingsync.Bumps (a room.Indexer) in the transaction that stores the
-- event, so ordering never loads a timeline. event_nid names the event;
-- its stream_pos is the bump stamp.
CREATE TABLE room_bumps (
    room_id   TEXT PRIMARY KEY,
    event_nid BIGINT NOT NULL
);
-- Rooms held before this migration start from their newest bump event.
INSERT INTO room_bumps (room_id, event_nid)
SELECT e.room_id, MAX(e.event_nid) FROM events e
WHERE e.outlier = 0 AND e.rejected = 0 AND e.soft_failed = 0 AND e.stream_pos > 0
  AND e.type IN ('m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker',
                 'm.call.invite', 'm.poll.start', 'm.beacon_info')
GROUP BY e.room_id;

-- The epochs (one per process start) that issued sliding sync pos
-- tokens. Connection state lives in memory; a pos of an earlier epoch is
-- rebuilt from the positions it carries, a pos of an epoch never issued
-- is M_UNKNOWN_POS.
CREATE TABLE sliding_sync_epochs (
    epoch      BIGINT PRIMARY KEY,
    started_ts BIGINT NOT NULL
);

-- +goose Down
DROP TABLE sliding_sync_epochs;
DROP TABLE room_bumps;
