package users

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Limits of spec v1.16's profile fields.
const (
	// MaxProfileBytes bounds a whole profile, as its JSON object.
	MaxProfileBytes = 64 << 10
	// MaxProfileKeyBytes bounds a field's name.
	MaxProfileKeyBytes = 255
)

// profileKeyRE is the keyName grammar of profile.yaml: the two original
// fields, m.tz, or a namespaced custom field.
var profileKeyRE = regexp.MustCompile(`^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$`)

// ValidateProfileKey checks a profile field's name.
func ValidateProfileKey(key string) error {
	if len(key) > MaxProfileKeyBytes {
		return mxerr.KeyTooLarge.With("profile keys are at most %d bytes", MaxProfileKeyBytes)
	}
	if !profileKeyRE.MatchString(key) {
		return mxerr.InvalidParam.With("invalid profile key %q", key)
	}
	return nil
}

// Profile returns every field of a local user's profile: displayname and
// avatar_url when set, and the custom fields.
func (s *Service) Profile(ctx context.Context, user id.UserID) (map[string]json.RawMessage, error) {
	acct, err := s.Get(ctx, user)
	if err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	if acct.DisplayName != "" {
		out["displayname"], _ = json.Marshal(acct.DisplayName)
	}
	if acct.AvatarURL != "" {
		out["avatar_url"], _ = json.Marshal(acct.AvatarURL)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT field, value FROM profile_fields WHERE user_id = $1`, user.String())
	if err != nil {
		return nil, fmt.Errorf("loading the profile fields of %s: %w", user, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("reading a profile field of %s: %w", user, err)
		}
		out[k] = json.RawMessage(v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the profile fields of %s: %w", user, err)
	}
	return out, nil
}

// SetProfileField stores a custom profile field (not displayname or
// avatar_url, which SetProfile changes), refusing with
// M_PROFILE_TOO_LARGE a value that takes the profile past 64 KiB.
func (s *Service) SetProfileField(ctx context.Context, user id.UserID, key string, value json.RawMessage) error {
	if err := ValidateProfileKey(key); err != nil {
		return err
	}
	if key == "displayname" || key == "avatar_url" {
		return fmt.Errorf("profile field %s is set with SetProfile", key)
	}
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		// The size is of the profile as served: the other fields, the
		// account's two, and this one.
		size := len(key) + len(value) + 6
		rows, err := tx.QueryContext(ctx, `SELECT field, value FROM profile_fields WHERE user_id = $1 AND field <> $2`, user.String(), key)
		if err != nil {
			return fmt.Errorf("sizing the profile of %s: %w", user, err)
		}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return fmt.Errorf("sizing the profile of %s: %w", user, err)
			}
			size += len(k) + len(v) + 6
		}
		rows.Close()
		var dn, av string
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(displayname, ''), COALESCE(avatar_url, '') FROM accounts WHERE user_id = $1`,
			user.String()).Scan(&dn, &av); err != nil {
			return fmt.Errorf("sizing the profile of %s: %w", user, err)
		}
		size += len(dn) + len(av) + 40
		if size > MaxProfileBytes {
			return mxerr.ProfileTooLarge.With("a profile is at most %d bytes", MaxProfileBytes)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO profile_fields (user_id, field, value) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value`, user.String(), key, string(value)); err != nil {
			return fmt.Errorf("setting profile field %s of %s: %w", key, user, err)
		}
		return nil
	})
}

// DeleteProfileField removes a custom profile field; a field never set
// is no error.
func (s *Service) DeleteProfileField(ctx context.Context, user id.UserID, key string) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM profile_fields WHERE user_id = $1 AND field = $2`, user.String(), key); err != nil {
			return fmt.Errorf("deleting profile field %s of %s: %w", key, user, err)
		}
		return nil
	})
}
