-- +goose Up
-- Outliers are events we hold without knowing the state before them: the
-- auth chain and state of a room we joined over federation, and events
-- fetched to fill gaps. They have negative stream positions, so no timeline
-- or sync range ever includes them, and snapshot_nid 0.
ALTER TABLE events ADD COLUMN outlier BIGINT NOT NULL DEFAULT 0;

-- Invites from other servers to rooms this server is not in yet. The
-- stripped state is what the invitee's clients see under rooms.invite.
CREATE TABLE remote_invites (
    user_id      TEXT NOT NULL,
    room_id      TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    room_version TEXT NOT NULL,
    event_json   TEXT NOT NULL,
    invite_state TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

-- Transactions received from other servers, so a retried transaction is
-- answered without processing its PDUs twice.
CREATE TABLE received_transactions (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- +goose Down
DROP TABLE received_transactions;
DROP TABLE remote_invites;
ALTER TABLE events DROP COLUMN outlier;
