-- +goose Up
-- Outbound federation queues (internal/sender).

-- One row per PDU or EDU handed to the sender, stored once however many
-- destinations it goes to. kind is 0 for a PDU, 1 for an EDU; json is the
-- PDU in its federation format or the whole EDU object
-- ({"edu_type": ..., "content": ...}). A payload is deleted when no queue
-- row refers to it any more.
CREATE TABLE sender_payloads (
    payload_nid BIGINT PRIMARY KEY,
    kind        BIGINT NOT NULL,
    edu_type    TEXT NOT NULL DEFAULT '',
    json        TEXT NOT NULL,
    created_ts  BIGINT NOT NULL
);

-- One row per payload per destination until the destination has answered
-- 200 to a transaction carrying it. payload_nid orders a destination's
-- queue. txn_id is set while the row is part of the destination's one
-- transaction in flight (sender_txns), so a retry after a restart sends the
-- same batch under the same transaction ID.
CREATE TABLE sender_queue (
    destination TEXT NOT NULL,
    kind        BIGINT NOT NULL,
    payload_nid BIGINT NOT NULL,
    txn_id      TEXT,
    PRIMARY KEY (destination, kind, payload_nid)
);
CREATE INDEX sender_queue_payload ON sender_queue (payload_nid);
CREATE INDEX sender_queue_txn ON sender_queue (destination, txn_id);

-- The transaction in flight to each destination, at most one.
CREATE TABLE sender_txns (
    destination TEXT PRIMARY KEY,
    txn_id      TEXT NOT NULL,
    origin_ts   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE sender_txns;
DROP TABLE sender_queue;
DROP TABLE sender_payloads;
