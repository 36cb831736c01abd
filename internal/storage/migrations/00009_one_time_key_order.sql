-- +goose Up
-- The upload a one-time key came in, from the one_time_key_upload counter:
-- /keys/claim hands out the oldest upload first (spec v1.15), and key IDs
-- do not sort in upload order. Keys stored before this migration get 0,
-- older than any upload after it.
ALTER TABLE e2ee_one_time_keys ADD COLUMN upload_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX e2ee_one_time_keys_order ON e2ee_one_time_keys (user_id, device_id, algorithm, upload_seq, key_id);

-- +goose Down
DROP INDEX e2ee_one_time_keys_order;
ALTER TABLE e2ee_one_time_keys DROP COLUMN upload_seq;
