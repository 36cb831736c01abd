-- +goose Up
-- Guest accounts (internal/users, the guest access module): registered
-- with POST /register?kind=guest, without a password; a registration that
-- presents the guest's access token upgrades the account in place (the
-- flag is cleared, a password set), keeping its user ID.
ALTER TABLE accounts ADD COLUMN is_guest BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE accounts DROP COLUMN is_guest;
