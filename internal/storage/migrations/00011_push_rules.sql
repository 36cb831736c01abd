-- +goose Up
-- Each user's push rules (internal/push): the user-defined rules and the
-- changes to server-default rules, as one JSON document. Users with no
-- row have the server defaults only. Every change also rewrites the
-- user's m.push_rules account data in the same transaction.
CREATE TABLE push_rules (
    user_id TEXT PRIMARY KEY,
    rules   TEXT NOT NULL
);

-- +goose Down
DROP TABLE push_rules;
