package keys

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// maxValidity caps every valid_until_ts we accept: the spec says to use the
// lesser of the served value and seven days into the future.
const maxValidity = 7 * 24 * time.Hour

// Key is a server's verify key and how long it may be used.
type Key struct {
	Key id.SigningKey
	// ValidUntil is when the key stops being valid: the response's
	// valid_until_ts capped at seven days after it was fetched, or the
	// expiry of an old key.
	ValidUntil time.Time
	// Expired reports an old_verify_keys entry: it only verifies events
	// sent before ValidUntil, and refetching will not extend it.
	Expired bool
}

type row struct {
	keyID      id.KeyID
	key        id.SigningKey
	validUntil int64
	expired    int64
	fetched    int64
	response   sql.NullString
}

func (r row) toKey() Key {
	if r.expired > 0 {
		return Key{Key: r.key, ValidUntil: time.UnixMilli(r.expired), Expired: true}
	}
	until := time.UnixMilli(r.validUntil)
	if limit := time.UnixMilli(r.fetched).Add(maxValidity); until.After(limit) {
		until = limit
	}
	return Key{Key: r.key, ValidUntil: until}
}

func loadRows(ctx context.Context, q storage.Querier, server string) ([]row, error) {
	rows, err := q.QueryContext(ctx, `SELECT key_id, verify_key, valid_until_ts, expired_ts, fetched_ts, response
		FROM server_keys WHERE server_name = $1`, server)
	if err != nil {
		return nil, fmt.Errorf("loading keys of %s: %w", server, err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.keyID, &r.key, &r.validUntil, &r.expired, &r.fetched, &r.response); err != nil {
			return nil, fmt.Errorf("loading keys of %s: %w", server, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading keys of %s: %w", server, err)
	}
	return out, nil
}

// storeResponse records every key of a checked response. A row only moves
// forward: an older response (say, a notary's cached copy) never replaces
// what a newer one said.
func storeResponse(ctx context.Context, db *storage.DB, resp ServerKeysResp, raw json.RawMessage, fetched time.Time) error {
	return db.WriteTx(ctx, func(tx *storage.Tx) error {
		put := func(keyID id.KeyID, key id.SigningKey, expired int64) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO server_keys
				(server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_ts, response)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (server_name, key_id) DO UPDATE SET
					verify_key = excluded.verify_key, valid_until_ts = excluded.valid_until_ts,
					expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts,
					response = excluded.response
				WHERE excluded.valid_until_ts >= server_keys.valid_until_ts`,
				resp.ServerName, string(keyID), string(key), resp.ValidUntilTS, expired, fetched.UnixMilli(), string(raw))
			if err != nil {
				return fmt.Errorf("storing key %s of %s: %w", keyID, resp.ServerName, err)
			}
			return nil
		}
		for keyID, k := range resp.VerifyKeys {
			if err := put(keyID, k.Key, 0); err != nil {
				return err
			}
		}
		for keyID, k := range resp.OldVerifyKeys {
			if _, current := resp.VerifyKeys[keyID]; current {
				continue
			}
			expired := k.ExpiredTS
			if expired <= 0 {
				expired = 1 // listed as old without a time: never valid
			}
			if err := put(keyID, k.Key, expired); err != nil {
				return err
			}
		}
		return nil
	})
}

// recordOwnKey stores our current key and marks any other key of ours that
// was still current as expired now: the key file was rotated.
func recordOwnKey(ctx context.Context, db *storage.DB, server string, k SigningKey, now time.Time) error {
	return db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE server_keys SET expired_ts = $3
			WHERE server_name = $1 AND key_id <> $2 AND expired_ts = 0`,
			server, string(k.ID), now.UnixMilli()); err != nil {
			return fmt.Errorf("retiring our previous signing key: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO server_keys
			(server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_ts, response)
			VALUES ($1, $2, $3, 0, 0, $4, NULL)
			ON CONFLICT (server_name, key_id) DO UPDATE SET
				verify_key = excluded.verify_key, expired_ts = 0, response = NULL`,
			server, string(k.ID), string(k.Public()), now.UnixMilli()); err != nil {
			return fmt.Errorf("recording our signing key %s: %w", k.ID, err)
		}
		return nil
	})
}
