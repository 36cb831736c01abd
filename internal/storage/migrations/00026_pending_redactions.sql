-- +goose Up
-- Redactions received before the event they redact (internal/room): kept
-- until the target arrives, which is then stored redacted. powerful is 1
-- when the redaction's sender had the redact power level when it
-- arrived; otherwise it applies only to an event of the same server.
CREATE TABLE pending_redactions (
    target_id     TEXT NOT NULL,
    redaction_id  TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    sender_server TEXT NOT NULL,
    powerful      INTEGER NOT NULL,
    PRIMARY KEY (target_id, redaction_id)
);

-- +goose Down
DROP TABLE pending_redactions;
