-- +goose Up
-- A client transaction ID is scoped to the device and the request path
-- (spec: client-server API, "Transaction identifiers"): the same ID sent
-- to another room, as another event type, or to /redact instead of /send
-- is a new request. scope names the path: "send ROOM TYPE" or
-- "redact ROOM EVENT". The primary key cannot change in place on SQLite,
-- so the table is rebuilt; the sends remembered so far keep their scope,
-- derived from their event. Remembered redactions (whose scope would need
-- the redacted event from the JSON) are dropped: at worst a retry within
-- the day after the upgrade redacts twice, which changes nothing.
CREATE TABLE transaction_ids_scoped (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);
INSERT INTO transaction_ids_scoped (user_id, device_id, scope, txn_id, event_id, created_ts)
    SELECT t.user_id, t.device_id, 'send ' || e.room_id || ' ' || e.type, t.txn_id, t.event_id, t.created_ts
    FROM transaction_ids t JOIN events e ON e.event_id = t.event_id
    WHERE t.txn_id NOT LIKE 'redact:%';
DROP TABLE transaction_ids;
ALTER TABLE transaction_ids_scoped RENAME TO transaction_ids;

-- Redactions used to record their transaction ID as "redact:ID", and
-- unsigned.transaction_id echoed that prefix, so clients never matched
-- the echo to their local redaction.
UPDATE events SET txn_id = substr(txn_id, 8) WHERE type = 'm.room.redaction' AND txn_id LIKE 'redact:%';

-- +goose Down
-- The unscoped table starts empty: it is a day's memory for retries.
UPDATE events SET txn_id = 'redact:' || txn_id WHERE type = 'm.room.redaction' AND txn_id IS NOT NULL;
DROP TABLE transaction_ids;
CREATE TABLE transaction_ids (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
