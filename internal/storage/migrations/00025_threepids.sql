-- +goose Up
-- Third-party identifiers (internal/threepid): the validation sessions of
-- e-mail addresses, and the addresses bound to accounts. Only the SHA-256
-- of a validation token is kept.
CREATE TABLE threepid_sessions (
    sid           TEXT PRIMARY KEY,
    client_secret TEXT NOT NULL,
    medium        TEXT NOT NULL,
    address       TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    send_attempt  BIGINT NOT NULL,
    expires_ts    BIGINT NOT NULL,
    validated_ts  BIGINT
);
CREATE INDEX threepid_sessions_address ON threepid_sessions (medium, address, client_secret);
CREATE INDEX threepid_sessions_expiry ON threepid_sessions (expires_ts);
CREATE TABLE account_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    validated_ts BIGINT NOT NULL,
    added_ts     BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX account_threepids_user ON account_threepids (user_id);
-- The identity servers a user bound an identifier on through
-- /account/3pid/bind, so that removing it or deactivating unbinds it there.
CREATE TABLE threepid_id_server_binds (
    user_id   TEXT NOT NULL,
    medium    TEXT NOT NULL,
    address   TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);

-- +goose Down
DROP TABLE threepid_id_server_binds;
DROP TABLE account_threepids;
DROP TABLE threepid_sessions;
