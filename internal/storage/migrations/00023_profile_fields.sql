-- +goose Up
-- Custom profile fields (spec v1.16, internal/users/profile.go): every
-- field but displayname and avatar_url, which stay on accounts. value is
-- the field's JSON.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field   TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);

-- +goose Down
DROP TABLE profile_fields;
